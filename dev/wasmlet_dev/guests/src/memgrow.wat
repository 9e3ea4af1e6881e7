;; memgrow: grows memory one 64 KiB page at a time with memory.grow, without libc, and
;; executes `unreachable` as soon as a grow is refused (memory.grow returns -1).
(module
  (memory (export "memory") 1)
  (func $start (export "_start")
    (block $refused
      (loop $grow
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $grow)))
    unreachable))
