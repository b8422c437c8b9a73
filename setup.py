"""Build the Cython extension package ``fastseq_ext``.

No OpenMP: the kernels' threads are fastseq_ext's own small team (``_team.h``, POSIX
threads; serial where there are none). Cython directives are set once here;
``FASTSEQ_DEBUG=1`` switches bounds checks and wraparound on for debugging;
``FASTSEQ_SANITIZE=address`` builds with AddressSanitizer (see tools/asan_ext.sh).
"""
import os
import shutil
import subprocess
import sys
import tempfile
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


DEBUG = os.environ.get("FASTSEQ_DEBUG", "0") == "1"
# FASTSEQ_SANITIZE=address: an AddressSanitizer build (tools/asan_ext.sh builds one in a
# scratch copy; import it with LD_PRELOAD=$(gcc -print-file-name=libasan.so)). Never for
# an install: every memory access pays a check.
SANITIZE = os.environ.get("FASTSEQ_SANITIZE", "").strip()
# Target architecture of the kernels (the step GEMM, the pointwise loops).
# Default "native": the vectorized float32 tanh/sigmoid run ~2.5x faster with AVX2+FMA than
# with the portable SSE2 baseline, and a source build runs where it was compiled. Set
# FASTSEQ_MARCH=portable when building a wheel for other machines (or any -march value).
MARCH = os.environ.get("FASTSEQ_MARCH", "native").strip()


def _march_flags(compiler_cmd="cc"):
    """``-march=<MARCH>`` if the compiler accepts it, else [] (e.g. MSVC, or 'portable')."""
    if sys.platform == "win32" or MARCH in ("", "portable"):
        return []
    tmp = tempfile.mkdtemp()
    try:
        path = os.path.join(tmp, "m.c")
        with open(path, "w") as fh:
            fh.write("int main(void){return 0;}\n")
        cc = os.environ.get("CC", compiler_cmd)
        result = subprocess.run([cc, "-march=" + MARCH, path, "-o", os.path.join(tmp, "m")],
                                capture_output=True)
        return ["-march=" + MARCH] if result.returncode == 0 else []
    except OSError:
        return []
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
DIRECTIVES = dict(
    language_level=3,
    boundscheck=DEBUG,
    wraparound=DEBUG,
    initializedcheck=DEBUG,
    cdivision=True,
    nonecheck=False,
    embedsignature=True,
)


class BuildExt(build_ext):
    """Optimisation, architecture, sanitizer and thread flags per compiler."""

    def build_extensions(self):
        cc = self.compiler.compiler[0] if hasattr(self.compiler, "compiler") else "cc"
        flags = ([], []) if sys.platform == "win32" else (["-pthread"], ["-pthread"])
        opt = ["/O2"] if sys.platform == "win32" else (
            ["-O0", "-g"] if DEBUG else
            # -fno-trapping-math: lets gcc if-convert selects around a division (the float32
            # tanh's small-|x| branch, the clamps), so those loops vectorize; results unchanged
            ["-O3", "-ffp-contract=fast", "-fno-trapping-math"]
            + _march_flags(cc))
        san = ([f"-fsanitize={SANITIZE}", f"-fsanitize-recover={SANITIZE}",
                "-fno-omit-frame-pointer", "-g"] if SANITIZE else [])
        for ext in self.extensions:
            ext.extra_compile_args = opt + san + flags[0] + ext.extra_compile_args
            ext.extra_link_args = flags[1] + san[:1] + ext.extra_link_args
        super().build_extensions()


extensions = [
    Extension(
        "fastseq_ext." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[np.get_include(), "fastseq_ext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(glob(os.path.join("fastseq_ext", "*.pyx")))
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES,
                          annotate=os.environ.get("FASTSEQ_ANNOTATE") == "1"),
    cmdclass={"build_ext": BuildExt},
)
