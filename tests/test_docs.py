"""The documentation agrees with the code: every rule type in the registry, every server
setting, every command-line option and every verdict field has its documented entry,
the worked examples of the policy page give the messages gate gives, every page is in
the site's navigation, and the README stays short.

The site itself is built with ``mkdocs build --strict`` by ``make docs`` (and ``make
test``), which fails on a broken link or a missing page.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gate._proto.gate.v1 import gate_pb2
from gate.cli import build_parser
from gate.config import ServerConfig
from gate.datasets.spec import DatasetSpec
from gate.metrics import ClassificationMetrics
from gate.policy import apply_policy, parse_policy
from gate.policy.rules import rule_types
from gate.server.auth import METHOD_ROLES, SERVICE_PREFIX
from gate.verdict import ClassCheck, Decision, RuleResult, Severity, Status, Verdict

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
CLI_PAGE = DOCS / "cli.md"
CONFIG_PAGE = DOCS / "configuration.md"
POLICY_PAGE = DOCS / "policies.md"
VERDICT_PAGE = DOCS / "verdict.md"
README_MAX_LINES = 200
PETS = ["cat", "dog", "rabbit"]
# the held-out set of the policy page's worked examples
WORKED_EXAMPLE = ClassificationMetrics.from_confusion([[50, 2, 3], [4, 45, 1], [2, 3, 40]], PETS)
FENCE = re.compile(r"^```.*?^```\s*$", re.M | re.S)


@dataclass(frozen=True)
class Section:
    """A heading of a page and the text below it, down to the next heading of its level or above."""

    page: Path
    level: int
    heading: str
    body: str


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def sections(page: Path) -> list[Section]:
    text = page.read_text(encoding="utf-8")
    # headings inside code blocks (a shell comment, a YAML comment) are not headings
    blanked = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    starts = [(m.start(), len(m.group(1)), m.group(2).strip()) for m in re.finditer(r"^(#{1,6}) (.+)$", blanked, re.M)]
    found = []
    for i, (start, level, heading) in enumerate(starts):
        end = next((s for s, lv, _ in starts[i + 1 :] if lv <= level), len(text))
        found.append(Section(page, level, heading, text[start:end]))
    return found


def all_sections() -> list[Section]:
    return [s for page in pages() for s in sections(page)]


def table_rows(body: str) -> list[list[str]]:
    """The rows of the Markdown tables in ``body``, as cells, without header and rule lines."""
    rows: list[list[str]] = []
    for line in body.splitlines():
        if not line.startswith("|"):
            continue
        if re.fullmatch(r"\|[\s|:-]+\|", line):
            rows.pop()  # the line above was the table's header
            continue
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def only_section(page: Path, heading: str) -> Section:
    matching = [s for s in sections(page) if s.heading == heading]
    assert len(matching) == 1, f"{page.name}: expected one section '{heading}', found {len(matching)}"
    return matching[0]


# -- README -----------------------------------------------------------------------------------


def test_the_readme_is_short_and_keeps_the_essentials() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    for essential in (
        "make demo",
        "make test",
        "rabbit: recall 0.120 < 0.800 (12/100)",
        "VERDICT: FAIL",
        "`0` PASS, `1`\nFAIL, `2` ERROR",
    ):
        assert essential in text, essential


def test_readme_links_lead_to_pages_that_exist() -> None:
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if not t.startswith("http") and not (ROOT / t).is_file()]
    assert not missing


def _yaml_blocks(page: Path) -> list[dict[str, Any]]:
    blocks = re.findall(r"^```yaml\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)
    loaded = [yaml.safe_load(b) for b in blocks]
    return [b for b in loaded if isinstance(b, dict)]


@pytest.mark.parametrize("page", [README, DOCS / "getting-started.md"], ids=lambda p: p.name)
def test_the_tour_s_policies_and_dataset_specs_are_valid(page: Path) -> None:
    blocks = _yaml_blocks(page)
    policies = [b for b in blocks if "rules" in b]
    specs = [b for b in blocks if "source" in b]
    assert policies and specs
    for policy in policies:
        parse_policy(yaml.safe_dump(policy))  # PolicyError, listing every problem, when invalid
    for spec in specs:
        DatasetSpec.model_validate(spec)


# -- the site's navigation --------------------------------------------------------------------


def _nav_files(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [f for item in node for f in _nav_files(item)]
    if isinstance(node, dict):
        return [f for value in node.values() for f in _nav_files(value)]
    return []


def _mkdocs_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return config


def test_every_page_is_in_the_navigation() -> None:
    nav = set(_nav_files(_mkdocs_config()["nav"]))
    written = {str(p.relative_to(DOCS)) for p in pages()}
    assert sorted(written - nav) == [], "pages missing from mkdocs.yml's nav"


# -- rule types -------------------------------------------------------------------------------


def test_every_rule_type_has_a_heading_with_its_name() -> None:
    headings = [s.heading for s in all_sections()]
    undocumented = [t for t in rule_types() if not any(f"`{t}`" in h for h in headings)]
    assert undocumented == [], "rule types without a heading `type` under docs/"


def _worked_examples() -> list[tuple[str, str]]:
    """(rule YAML, message) pairs of the policy page's rule reference: a one-rule YAML
    block followed by a text block."""
    body = only_section(POLICY_PAGE, "Rule reference").body
    pairs = re.findall(r"```yaml\n- (\{.*?\})\n```\s*\n```text\n(.*?)\n```", body)
    return [(rule, message) for rule, message in pairs]


def test_the_policy_page_has_a_worked_example_per_matrix_rule() -> None:
    examples = _worked_examples()
    covered = {yaml.safe_load(rule)["type"] for rule, _ in examples}
    assert {"metric", "per_class", "min_support", "imbalance", "majority_baseline", "confusion"} <= covered


@pytest.mark.parametrize(("rule", "message"), _worked_examples())
def test_each_worked_example_gives_the_message_printed_under_it(rule: str, message: str) -> None:
    # a block rule that can fail keeps a policy of a warn rule alone from being refused
    guard = "{id: guard, type: metric, metric: accuracy, min: 0.5}"
    policy = parse_policy(f"version: 1\nname: example\nrules:\n  - {rule}\n  - {guard}\n")
    result = apply_policy(policy, WORKED_EXAMPLE)[0]
    assert result.message == message


# -- server settings --------------------------------------------------------------------------


def _documented_default(cell: str) -> Any:
    """The first backticked value of a default cell, read as YAML."""
    values = ticked(cell)
    assert values, f"no default in {cell!r}"
    return yaml.safe_load(values[0])


def _plain(value: Any) -> Any:
    """A setting's default as YAML would write it."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _settings_table() -> dict[str, list[str]]:
    rows = table_rows(only_section(CONFIG_PAGE, "Every setting").body)
    return {ticked(r[0])[0]: r for r in rows}


def test_every_setting_has_a_row_with_its_variable_and_default() -> None:
    table = _settings_table()
    elsewhere = "\n".join(p.read_text(encoding="utf-8") for p in pages() if p != CONFIG_PAGE)
    for name, field in ServerConfig.model_fields.items():
        variable = f"GATE_{name.upper()}"
        if name not in table:
            # a setting documented on its own topic's page: key and variable on one line
            assert re.search(rf"^.*`{name}`.*`{variable}`.*$", elsewhere, re.M), f"setting {name} is undocumented"
            continue
        row = table[name]
        assert ticked(row[1]) == [variable], name
        assert _documented_default(row[2]) == _plain(field.get_default(call_default_factory=True)), name


def test_the_settings_table_names_only_real_settings() -> None:
    assert sorted(set(_settings_table()) - set(ServerConfig.model_fields)) == []


# -- the command line -------------------------------------------------------------------------


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[str, argparse.ArgumentParser]:
    """Every command line that runs something, as 'gate eval', 'gate key show'..., with its parser."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    found = {" ".join(("gate", *path)): parser}
    for sub in subs:
        for name, child in sub.choices.items():
            found.update(_commands(child, (*path, name)))
    return found


def _registered(parser: argparse.ArgumentParser) -> set[str]:
    names: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            names.update(action.option_strings)
        else:
            names.add(str(action.metavar or action.dest))
    return names


COMMANDS = _commands(build_parser())


def _command_sections(command: str) -> list[Section]:
    return [s for s in all_sections() if f"`{command}`" in s.heading]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_documented_with_every_option(command: str) -> None:
    registered = _registered(COMMANDS[command])
    in_cli_page = [s for s in _command_sections(command) if s.page == CLI_PAGE]
    if in_cli_page:
        documented = {name for row in table_rows(in_cli_page[0].body) for name in ticked(row[0])}
        assert sorted(documented - registered) == [], f"{command}: documented options it does not take"
        assert sorted(registered - documented) == [], f"{command}: options missing from docs/cli.md"
        return
    # a command documented on its own topic's page names each of its options there
    elsewhere = _command_sections(command)
    has_subcommands = any(isinstance(a, argparse._SubParsersAction) for a in COMMANDS[command]._actions)
    if has_subcommands and not registered:
        return  # a group such as `gate key`: its subcommands are documented one by one
    assert elsewhere, f"{command} has no section under docs/ (a heading with `{command}`)"
    text = "\n".join(s.body for s in elsewhere)
    missing = sorted(o for o in registered if o.startswith("-") and o not in text)
    assert missing == [], f"{command}: options missing from its page"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_and_subcommand_says_what_it_does_in_help(command: str) -> None:
    parser = COMMANDS[command]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            quiet = [c.dest for c in action._choices_actions if not (c.help or "").strip()]
            assert quiet == [], f"{command}: subcommands without help"
        elif not isinstance(action, argparse._HelpAction):
            assert (action.help or "").strip(), f"{command} {action.option_strings or action.dest}: no help"


def test_the_cd_recipes_use_only_options_gate_takes() -> None:
    page = DOCS / "cd-recipes.md"
    text = page.read_text(encoding="utf-8")
    known = _registered(COMMANDS["gate check"]) | _registered(COMMANDS["gate verify"])
    used = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", text))
    assert used
    assert sorted(used - known) == []
    # the recipes written out here (the others are included from deploy/ci/) are YAML that loads
    assert any(block.get("kind") == "Workflow" for block in _yaml_blocks(page))


# -- the service ------------------------------------------------------------------------------


def test_the_service_page_lists_every_method_with_the_role_it_needs() -> None:
    rows = table_rows(only_section(DOCS / "service.md", "API").body)
    documented = {ticked(r[0])[0]: ticked(r[1])[0] for r in rows}
    elsewhere = "\n".join(p.read_text(encoding="utf-8") for p in pages())
    for method in gate_pb2.DESCRIPTOR.services_by_name["GateService"].methods_by_name:
        role = METHOD_ROLES[SERVICE_PREFIX + method]
        if method in documented:
            assert documented[method] == role, method
        else:
            # a method documented on its own topic's page, with its role
            assert re.search(rf"^.*`{method}`.*`{role}`.*$", elsewhere, re.M), f"{method} is undocumented"
    assert sorted(set(documented) - set(gate_pb2.DESCRIPTOR.services_by_name["GateService"].methods_by_name)) == []


# -- the verdict ------------------------------------------------------------------------------


def _field_table(heading: str) -> set[str]:
    return {ticked(row[0])[0] for row in table_rows(only_section(VERDICT_PAGE, heading).body)}


def _full_verdict() -> Verdict:
    """A verdict with every optional part present."""
    check = ClassCheck("cat", Status.PASS, 0.9, 0.8, 45, 50, "cat: recall 0.900 >= 0.800 (45/50)")
    rule = RuleResult("r", "per_class", Status.PASS, Severity.BLOCK, "ok", 0.9, {"min": 0.8}, (check,), {"k": 1})
    return Verdict(
        Decision.PASS,
        rules=[rule],
        metrics=WORKED_EXAMPLE.to_dict(),
        baseline={},
        train_sample={},
        dataset_audit={},
        diagnostics=[],
        waivers=[],
    )


def test_the_verdict_page_lists_every_top_level_field() -> None:
    assert _field_table("Top-level fields") == set(_full_verdict().to_dict())


def test_the_verdict_page_lists_every_field_of_a_rule_and_a_class() -> None:
    rule = _full_verdict().rules[0]
    # a waived result adds its real outcome and its waiver
    waived = dataclasses.replace(rule, status=Status.WAIVED, outcome=Status.FAIL, waiver={"id": "w1"})
    assert _field_table("A rule result") == set(rule.to_dict()) | set(waived.to_dict())
    assert _field_table("A class within a rule") == set(rule.classes[0].to_dict())


def test_the_verdict_page_lists_every_summary_count_and_metric() -> None:
    verdict = _full_verdict()
    verdict.rules.append(
        dataclasses.replace(verdict.rules[0], status=Status.WAIVED, outcome=Status.FAIL, waiver={"id": "w1"})
    )
    assert _field_table("`summary`") == set(verdict.summary())  # with a waived rule, as the page says
    # calibration comes with the model's scores, which a confusion matrix alone lacks
    assert _field_table("`metrics`") == set(WORKED_EXAMPLE.to_dict()) | {"calibration"}
