;; nowasi: a command with no imports at all; _start computes 10! into memory and returns.
(module
  (memory (export "memory") 1)
  (func $start (export "_start")
    (local $i i32) (local $acc i32)
    (local.set $acc (i32.const 1))
    (local.set $i (i32.const 1))
    (block $done
      (loop $next
        (br_if $done (i32.gt_u (local.get $i) (i32.const 10)))
        (local.set $acc (i32.mul (local.get $acc) (local.get $i)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.store (i32.const 0) (local.get $acc))))
