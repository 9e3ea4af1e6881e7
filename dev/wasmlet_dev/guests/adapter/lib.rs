// Empty: this crate only pins the adapter provider (see Cargo.toml).
