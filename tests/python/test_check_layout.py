"""scripts/check_layout.py (run by `make lint`) finds an import cycle between two files of a
source tree and a function over its limit, and passes the project's own src/."""

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "check_layout.py"


def load():
    spec = importlib.util.spec_from_file_location("check_layout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(root: Path, files: dict) -> Path:
    src = root / "src"
    for name, text in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(text)
    return src


def run(src: Path):
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(src)], capture_output=True, text=True, check=False
    )


def test_a_cycle_through_two_siblings_is_found_and_a_child_using_its_parent_is_not(tmp_path):
    src = write(
        tmp_path,
        {
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a/mod.rs": "mod one;\nmod two;\npub use one::X;\npub struct Shared;\n",
            "a/one.rs": "use super::Shared;\nuse super::two::{Y, self as t};\npub struct X;\n",
            "a/two.rs": "pub struct Y;\nfn f() { crate::a::one::X; }\n",
            "b.rs": "use crate::a::{\n    X,\n};\n",
        },
    )
    result = run(src)
    assert result.returncode == 1, result
    assert result.stdout.strip() == "import cycle between files: a/one ↔ a/two", result.stdout


def test_no_cycle_passes(tmp_path):
    src = write(
        tmp_path,
        {
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "mod one;\nmod two;\nuse one::X;\npub struct Shared;\n",
            "a/one.rs": "use super::Shared;\nuse super::two::Y; // crate::a::one in a comment\n",
            "a/two.rs": "use super::Shared;\npub struct Y;\n",
        },
    )
    result = run(src)
    assert (result.returncode, result.stdout) == (0, ""), result


def test_a_long_function_is_named_with_its_length_and_a_listed_parser_is_not(tmp_path):
    body = "    let x = 1;\n" * 69
    src = write(
        tmp_path,
        {
            "lib.rs": "mod spec;\n",
            "spec.rs": f"pub fn short() {{\n{body[:-15]}}}\n\npub fn long(\n    a: u8,\n) {{\n{body}}}\n",
        },
    )
    layout = load()
    assert layout.long_functions(src) == [("spec.rs", 72, "long", 73)]
    layout.LONG_PARSERS[("spec.rs", "long")] = "a test's exemption"
    assert layout.long_functions(src) == []


def test_the_projects_source_passes():
    result = run(REPO / "src")
    assert (result.returncode, result.stdout) == (0, ""), result.stdout
