"""Build llama.cpp's own C++ ``llama-server`` from the llama.cpp sources inside llama-cpp-python's source package.

``make install`` keeps ``llama_cpp_python-0.3.36.tar.gz`` (the sdist) under ``.venv/share/kaiyuan``; its
``vendor/llama.cpp`` is the very llama.cpp that the installed llama-cpp-python wheel was built from, so the C++
server measured against ``kaiyuan serve`` runs the same kernels. The build is the one the Makefile uses for
llama-cpp-python (AVX2, no native tuning: the native build crashes on some CPUs here), Release, the
``llama-server`` target only, ``-j2``; the web UI is left out (its assets would be downloaded at build time) and
so are HTTPS and curl. The binary is cached at ``.venv/share/kaiyuan/bin/llama-server`` and rebuilt only when it
is absent (or with ``--force``). Usage:
    python benchmarks/llama_server.py [--force] [--jobs 2] [--keep-build]
prints the binary's path and, when it built, the build time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

VERSION = "0.3.36"
REPO = Path(__file__).resolve().parent.parent
SHARE = Path(os.environ.get("KAIYUAN_SHARE") or REPO / ".venv" / "share" / "kaiyuan")
SDIST = SHARE / f"llama_cpp_python-{VERSION}.tar.gz"
BINARY = SHARE / "bin" / "llama-server"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF", "-DGGML_AVX2=ON", "-DGGML_AVX512=OFF", "-DGGML_AMX_INT8=OFF",
    "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_SERVER=ON",
    # no web UI (LLAMA_USE_PREBUILT_UI would download it while building), no HTTPS, no tests/examples
    "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
]


class BuildError(RuntimeError):
    pass


def extract_llama_cpp(sdist: Path, into: Path) -> Path:
    """Extract ``vendor/llama.cpp`` of the sdist into ``into``; return the llama.cpp source directory."""
    if not sdist.is_file():
        raise BuildError(f"{sdist}: no llama-cpp-python source package (run `make install`, which keeps it)")
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise BuildError(f"{sdist}: has no {prefix}")
        archive.extractall(into, members=members, filter="data")
    return into / prefix.rstrip("/")


def build(force: bool = False, jobs: int = 2, keep_build: bool = False, log=print) -> tuple[Path, float | None]:
    """The cached ``llama-server`` binary, built first when absent (or ``force``); returns (path, build seconds or
    None when the cached binary was used). Build seconds cover extraction, configure and compile."""
    if BINARY.is_file() and os.access(BINARY, os.X_OK) and not force:
        return BINARY, None
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise BuildError(f"{tool} not found: building llama-server needs cmake and a C++ compiler")
    work = SHARE / "llama-server-build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    try:
        source = extract_llama_cpp(SDIST, work / "src")
        build_dir = work / "build"
        log(f"configuring {source} ({' '.join(CMAKE_FLAGS)})")
        _run(["cmake", "-S", str(source), "-B", str(build_dir), *CMAKE_FLAGS], work / "configure.log")
        log(f"building the llama-server target with -j{jobs}")
        _run(["cmake", "--build", str(build_dir), "--config", "Release", "--target", "llama-server", "-j", str(jobs)],
             work / "build.log")
        built = build_dir / "bin" / "llama-server"
        if not built.is_file():
            raise BuildError(f"the build finished without {built}")
        BINARY.parent.mkdir(parents=True, exist_ok=True)
        tmp = BINARY.with_suffix(".tmp")
        shutil.copy2(built, tmp)
        tmp.replace(BINARY)
    except BaseException:
        log(f"build failed; logs kept in {work}")
        raise
    seconds = time.perf_counter() - started
    (BINARY.parent / "llama-server.build-seconds").write_text(f"{seconds:.1f}\n")
    if not keep_build:
        shutil.rmtree(work, ignore_errors=True)
    return BINARY, seconds


def _run(command: list[str], log_file: Path) -> None:
    with log_file.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-30:])
        raise BuildError(f"{' '.join(command[:3])} … failed ({result.returncode}); end of {log_file}:\n{tail}")


def recorded_build_seconds() -> float | None:
    """The build time recorded when the cached binary was built, if any."""
    record = BINARY.parent / "llama-server.build-seconds"
    try:
        return float(record.read_text())
    except (OSError, ValueError):
        return None


def version() -> str:
    """What ``llama-server --version`` prints (its first line that names a version)."""
    result = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True, timeout=30, check=False)
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "version" in line.lower()]
    return lines[0].strip() if lines else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--force", action="store_true", help="Rebuild even when the cached binary exists.")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep-build", action="store_true", help="Keep the extracted sources and build folder.")
    args = parser.parse_args()
    try:
        path, seconds = build(force=args.force, jobs=args.jobs, keep_build=args.keep_build)
    except BuildError as exc:
        sys.exit(f"llama-server: {exc}")
    if seconds is None:
        recorded = recorded_build_seconds()
        print(f"{path} (cached{f'; built in {recorded:.0f} s' if recorded else ''})")
    else:
        print(f"{path} (built in {seconds:.0f} s)")
    print(version())


if __name__ == "__main__":
    main()
