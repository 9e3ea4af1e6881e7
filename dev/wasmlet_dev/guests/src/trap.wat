;; trap: a WASI command whose _start executes `unreachable`.
(module
  (func $start (export "_start")
    unreachable)
  (memory (export "memory") 1))
