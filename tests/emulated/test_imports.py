"""The image's import table: every function is played by the harness, and only kernel modules
are imported."""

import re
import shutil
import subprocess

import pytest

from nbshm_emu import harness as H


def test_every_import_is_implemented_by_the_harness(sys_path):
    h = H.Harness(sys_path)  # raises UnimplementedImports otherwise
    implemented = H.implemented_imports()
    assert h.imports, "no imports read from the image"
    for module, name in h.imports:
        assert (module, name) in implemented, f"{module}!{name}"
    # A driver imports from kernel modules only.
    assert {m for m, _ in h.imports} <= {"ndis", "ntoskrnl", "hal"}, h.imports


def test_the_loader_sees_the_import_table_llvm_readobj_prints(sys_path):
    """speakeasy's PE loader (pefile) and LLVM read the same import table."""
    readobj = shutil.which("llvm-readobj")
    if readobj is None:
        pytest.skip("llvm-readobj not installed (CI installs it for the cross-build)")
    out = subprocess.run([readobj, "--coff-imports", str(sys_path)], check=True,
                         capture_output=True, text=True).stdout
    seen, module = set(), None
    for line in out.splitlines():
        m = re.match(r"\s*Name: (\S+)", line)
        if m:
            module = m.group(1).rsplit(".", 1)[0].lower()
            continue
        m = re.match(r"\s*Symbol: (\w+)", line)
        if m:
            seen.add((module, m.group(1)))
    h = H.Harness(sys_path)
    assert seen == set(h.imports)


def test_an_unimplemented_import_fails_loudly(sys_path, monkeypatch):
    """Negative control: take one function away from the harness and it must refuse the image."""
    h = H.Harness(sys_path)
    victim = h.imports[0]
    table = dict(H.API_TABLE)
    del table[victim]
    monkeypatch.setattr(H, "API_TABLE", table)
    with pytest.raises(H.UnimplementedImports, match=victim[1]):
        H.Harness(sys_path)
