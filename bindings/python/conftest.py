# The binding under test: built from this checkout and generated into target/python, once per
# pytest session. XF_FFI_LIB names a library built elsewhere (say the `mobile` profile's) to
# test instead of the debug build.
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "target" / "python"
SUFFIX = {"darwin": "dylib", "win32": "dll"}.get(sys.platform, "so")
LIBNAME = ("" if sys.platform == "win32" else "lib") + "xaeroflux_ffi." + SUFFIX


def _cargo(*args):
    subprocess.run(["cargo", *args], cwd=ROOT, check=True)


def _prepare():
    _cargo("build", "--locked", "-p", "xaeroflux-ffi", "-p", "xaeroflux-bindgen")
    debug = ROOT / "target" / "debug" / LIBNAME
    # The module is generated from the debug build's metadata (a stripped library has none);
    # the library it loads checks, function by function, that its API is the same.
    lib = pathlib.Path(os.environ.get("XF_FFI_LIB") or debug).resolve()
    bindgen = ROOT / "target" / "debug" / "uniffi-bindgen"
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(bindgen), "generate", "--library", str(debug), "--language", "python",
         "--out-dir", str(OUT)],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    shutil.copyfile(lib, OUT / LIBNAME)
    sys.path.insert(0, str(OUT))


_prepare()
