//! Link settings of the app's library.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // Pack the library's relative relocations (RELR, `-z pack-relative-relocs`): a shared
    // library's relocation table is mostly pointers that only move with the load address, and
    // packed they take a few kilobytes instead of close to a megabyte. Linux (glibc 2.36 and
    // later, binutils 2.38) and Android (lld; loaded by Android 9, API 28, and later) read
    // them; Apple's linker has its own compact format (chained fixups) already. An app whose
    // Android minimum is older builds with XF_FFI_NO_RELR=1.
    let relr = std::env::var_os("XF_FFI_NO_RELR").is_none();
    if relr && (os == "linux" || os == "android") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    }
    // Android 15 devices may use 16 KiB pages, and Google Play asks apps for libraries whose
    // segments are aligned to them (older NDKs align to 4 KiB).
    if os == "android" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,max-page-size=16384");
    }
    println!("cargo:rerun-if-env-changed=XF_FFI_NO_RELR");
}
