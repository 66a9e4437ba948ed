"""The shape of the code, enforced: layers that point one way, small modules, and a command
framework whose public surface mypy can check (no `Any`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"markup": 0, "storage": 1, "rooms": 2, "commands": 3, "bot": 4}
"""Each package may import those ranked below it; `markup` is a leaf that imports none."""
OUTSIDE = {"tests", "bench", "devkit"}
MATRIX_FREE = {"markup", "storage", "rooms", "commands"}
MAX_LINES = 450


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


ALL_MODULES = [path for package in LAYERS for path in _modules(package)]


def _imported(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement names (inside functions and TYPE_CHECKING too)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", ALL_MODULES, ids=_where)
def test_imports_point_down_the_layers(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    rank = LAYERS[package]
    wrong: list[str] = []
    for line, name in _imported(path):
        top = name.partition(".")[0]
        if top in LAYERS and top != package and LAYERS[top] >= rank:
            wrong.append(f"line {line}: {name} is not below {package}")
        if package == "markup" and top in LAYERS and top != "markup":
            wrong.append(f"line {line}: markup is a leaf but imports {name}")
        if top in OUTSIDE:
            wrong.append(f"line {line}: {name} is not part of the bot")
        if top == "importlib":
            wrong.append(f"line {line}: no importlib tricks in package code")
        if top == "nio" and package in MATRIX_FREE:
            wrong.append(f"line {line}: {package} reaches Matrix only through the gateway")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", ALL_MODULES, ids=_where)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{_where(path)} has {lines} lines"


def _mentions_any(node: ast.AST | None) -> bool:
    if node is None:
        return False
    return any(
        (isinstance(item, ast.Name) and item.id == "Any")
        or (isinstance(item, ast.Attribute) and item.attr == "Any")
        or (isinstance(item, ast.Constant) and isinstance(item.value, str) and "Any" in item.value)
        for item in ast.walk(node)
    )


def _signature_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.AST | None]:
    arguments = function.args
    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    every += [arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
    return [function.returns, *(arg.annotation for arg in every)]


def _public_any(tree: ast.Module) -> list[str]:
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if not node.name.startswith("_") and any(
                _mentions_any(part) for part in _signature_nodes(node)
            ):
                found.append(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [target.id for target in targets if isinstance(target, ast.Name)]
            annotation = node.annotation if isinstance(node, ast.AnnAssign) else None
            if any(not name.startswith("_") for name in names) and (
                _mentions_any(node.value) or _mentions_any(annotation)
            ):
                found.extend(names)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for member in node.body:
                if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                    public = not member.name.startswith("_") or member.name == "__init__"
                    if public and any(_mentions_any(part) for part in _signature_nodes(member)):
                        found.append(f"{node.name}.{member.name}")
                elif isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name):
                    if not member.target.id.startswith("_") and _mentions_any(member.annotation):
                        found.append(f"{node.name}.{member.target.id}")
    return found


@pytest.mark.parametrize("path", _modules("commands/framework"), ids=_where)
def test_the_command_framework_has_no_any_in_its_public_signatures(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert _public_any(tree) == []


def test_the_any_check_finds_any() -> None:
    tree = ast.parse(
        "from typing import Any\n"
        "def f(x: Any) -> None: ...\n"
        "Alias = dict[str, Any]\n"
        "class C:\n    value: 'list[Any]'\n    def m(self) -> Any: ...\n"
        "def _private(x: Any) -> None: ...\n"
    )
    assert _public_any(tree) == ["f", "Alias", "C.value", "C.m"]


@pytest.mark.parametrize("path", ALL_MODULES, ids=_where)
def test_every_module_says_what_it_is_for(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert ast.get_docstring(tree), f"{_where(path)} has no module docstring"


TEST_ONLY_SWITCHES = ("PATCHWORK_CLOCK_FILE", "FileClock", "PATCHWORK_FAULT", "CrashAt")


@pytest.mark.parametrize("path", ALL_MODULES, ids=_where)
def test_no_test_only_switch_is_reachable_from_the_installed_bot(path: Path) -> None:
    """The clock tests move from outside lives in devkit, which is not installed."""
    text = path.read_text(encoding="utf-8")
    assert not [switch for switch in TEST_ONLY_SWITCHES if switch in text]
