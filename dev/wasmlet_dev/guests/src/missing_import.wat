;; missing_import: imports a WASI function that does not exist, so linking must fail.
(module
  (import "wasi_snapshot_preview1" "does_not_exist" (func $nope (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $start (export "_start")
    (drop (call $nope (i32.const 0)))))
