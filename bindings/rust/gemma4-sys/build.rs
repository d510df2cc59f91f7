// Links libgemma4.so: from GEMMA4_LIB_DIR if set (e.g. the CMake build directory), else from
// the system library path (an installed gemma4).
fn main() {
    println!("cargo:rerun-if-env-changed=GEMMA4_LIB_DIR");
    if let Ok(dir) = std::env::var("GEMMA4_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", dir);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir);
    }
    println!("cargo:rustc-link-lib=dylib=gemma4");
}
