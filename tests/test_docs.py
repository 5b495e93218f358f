"""The README stays true: every config key is documented and the Quick start has exactly two commands."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from anpr_edge.config import AppConfig, Section, _section_type

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def leaf_keys(model: type[Section], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        section = _section_type(field.annotation)
        key = prefix + name
        if section is None:
            keys.append(key)
        elif typing.get_origin(field.annotation) is list:
            keys += [key] + leaf_keys(section, key + "[].")
        else:
            keys += leaf_keys(section, key + ".")
    return keys


def test_every_config_key_is_in_the_readme_reference() -> None:
    reference = README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([^`]+)` \|", reference, re.M))
    assert set(leaf_keys(AppConfig)) == documented


def test_quick_start_has_exactly_two_commands() -> None:
    section = re.search(r"^## Quick start\s*$(.*?)(?=^## )", README, re.M | re.S)
    assert section is not None
    block = re.search(r"```bash\n(.*?)```", section.group(1), re.S)
    assert block is not None
    commands = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert "anpr-edge run" in commands[0] and "pytest" in commands[1]
    ci = (REPO / ".ci" / "run").read_text()
    for command in commands:  # CI runs exactly what the README tells a new user
        assert f'="{command}"' in ci


def test_ci_installs_the_generator_fonts() -> None:
    synth = (REPO / "anpr_edge" / "train" / "synth_plates.py").read_text()
    packages = re.search(r"FONT_PACKAGES = \((.*?)\)", synth, re.S)
    assert packages is not None
    ci = (REPO / ".ci" / "run").read_text()
    for package in re.findall(r'"([^"]+)"', packages.group(1)):
        assert package in ci, package
