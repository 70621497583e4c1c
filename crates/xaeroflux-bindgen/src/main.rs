//! `uniffi-bindgen`, built at the UniFFI version `xaeroflux-ffi` is: generates the Python,
//! Swift and Kotlin sources from the built library (library mode), e.g.
//!
//! ```text
//! cargo run -p xaeroflux-bindgen -- generate --library target/debug/libxaeroflux_ffi.so \
//!     --language python --out-dir target/bindings/python
//! ```

fn main() {
    uniffi::uniffi_bindgen_main()
}
