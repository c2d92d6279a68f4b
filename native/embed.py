"""What the two cffi-embedded libraries (the PKCS#11 module, build.py; the minidriver card edge, md_build.py)
build the same way: the host-safety C code pasted into their source, the interpreter and site directories
recorded at install time, the glue compiled to bytecode, and link options that pin the library in memory."""

from __future__ import annotations

import marshal
import os
import site
import sys
import sysconfig
from pathlib import Path

import cffi

HERE = Path(__file__).resolve().parent


def library_version() -> tuple[str, str]:
    """major.minor of the package, read from its source so the build needs no import of it."""
    text = (HERE.parent / "src" / "vsc_provider" / "__init__.py").read_text()
    version = text.split('__version__ = "', 1)[1].split('"', 1)[0]
    major, minor = version.split(".")[:2]
    return major, minor


def with_host_guard(shim: str) -> str:
    """The library's shim with host_guard.c pasted at the line that says VSC_HOST_GUARD."""
    return shim.replace("\nVSC_HOST_GUARD\n", "\n" + (HERE / "host_guard.c").read_text(), 1)


def c_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def site_dirs() -> list[str]:
    dirs = list(site.getsitepackages())
    source = HERE.parent / "src"  # an editable install imports the package from here
    if (source / "vsc_provider").is_dir():
        dirs.append(str(source))
    return [d for d in dirs if os.path.isdir(d)]


def init_code(glue_file: str, glue_name: str) -> str:
    """The embedding init code: the site directories, then the glue as bytecode compiled here, so that no
    host process spends time compiling it at every start (the library only runs on this Python version)."""
    glue_path = HERE / glue_file
    code = compile(glue_path.read_text(), str(glue_path), "exec", dont_inherit=True)
    prelude = f"import sys\nfor _p in {site_dirs()!r}:\n    if _p not in sys.path:\n        sys.path.append(_p)\n"
    glue = f"import marshal\nexec(marshal.loads({marshal.dumps(code)!r}), {{'__name__': {glue_name!r}}})\n"
    return prelude + glue


def set_source(ffi: cffi.FFI, module: str, source: str, macros: list[tuple[str, str]]) -> None:
    """set_source with the interpreter's paths as macros and the link options every vsc library needs:
    libpython by an rpath, -z nodelete (CPython cannot be started twice in a process)."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    soname = sysconfig.get_config_var("INSTSONAME") or f"libpython{sys.version_info[0]}.{sys.version_info[1]}.so"
    ffi.set_source(
        module,
        source,
        define_macros=[
            ("VSC_PYTHON_EXE", c_string(sys.executable)),
            ("VSC_LIBPYTHON", c_string(soname)),
            ("VSC_PY_MAJMIN", c_string(f"{sys.version_info[0]}.{sys.version_info[1]}")),
            *macros,
        ],
        library_dirs=[libdir] if libdir else [],
        extra_compile_args=["-O2", "-fvisibility=hidden"],
        extra_link_args=[
            "-Wl,-z,nodelete",
            *([f"-L{libdir}", f"-Wl,-rpath,{libdir}"] if libdir else []),
            f"-lpython{sys.version_info[0]}.{sys.version_info[1]}{getattr(sys, 'abiflags', '')}",
            "-ldl",
            "-lpthread",
        ],
    )
