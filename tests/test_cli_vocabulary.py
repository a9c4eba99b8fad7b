"""One word, one meaning: every option of every command follows the CLI conventions (README).

The rules walk click's own description of the commands (``main.commands``), so a new command or
option that breaks them fails here without anyone listing it.
"""

from __future__ import annotations

import json
from collections import defaultdict

import click
import pytest
from click.testing import CliRunner

from cocostat.cli import CocostatCommand, DeprecatedAlias, OutputPath, main
from cocostat.errors import OptionError, check_int

#: the one long option whose path may be a file in one command and a folder in another.
ANY_PATH_KIND = {"--output"}


def _all_options():
    """(command name, click.Option) for every option of every command, the group's own included."""
    return [
        (name, option)
        for name, command in [("cocostat", main), *sorted(main.commands.items())]
        for option in command.params
        if isinstance(option, click.Option)
    ]


def _kind(option: click.Option) -> tuple:
    """What a user can type after the option: its value type (with choices, path kind), nargs, flag."""
    info = option.type.to_info_dict()
    kind = {k: v for k, v in info.items() if k not in ("name",)}
    if isinstance(option.type, OutputPath):
        kind["output"] = True
    return (option.is_flag, option.nargs, option.multiple, tuple(sorted((k, str(v)) for k, v in kind.items())))


def _visible():
    return [(cmd, o) for cmd, o in _all_options() if not isinstance(o, DeprecatedAlias)]


def test_every_command_is_walked():
    names = set(main.commands)
    assert {
        "info",
        "kmeans",
        "overlap",
        "predict",
        "anchor-audit",
        "mismatch",
        "assigners",
        "eval",
        "errors",
        "report",
        "convert",
    } <= names
    assert all(isinstance(c, CocostatCommand) for c in main.commands.values())


def test_a_short_flag_stands_for_one_long_option():
    longs = defaultdict(set)
    for cmd, option in _visible():
        shorts = [o for o in option.opts + option.secondary_opts if not o.startswith("--")]
        long = max(option.opts, key=len)
        for short in shorts:
            longs[short].add(long)
    clashes = {s: sorted(ls) for s, ls in longs.items() if len(ls) > 1}
    assert not clashes, f"short flags meaning different long options: {clashes}"
    assert longs["-o"] == {"--output"} and longs["-k"] == {"--num-anchors"}


def test_a_long_option_has_one_type_everywhere():
    kinds = defaultdict(lambda: defaultdict(list))
    for cmd, option in _visible():
        for opt in option.opts + option.secondary_opts:
            if opt.startswith("--"):
                kind = _kind(option)
                if opt in ANY_PATH_KIND and isinstance(option.type, click.Path):
                    kind = ("any path",)
                kinds[opt][kind].append(cmd)
    clashes = {opt: {str(k): v for k, v in by_kind.items()} for opt, by_kind in kinds.items() if len(by_kind) > 1}
    assert not clashes, f"long options with more than one type: {clashes}"


def test_the_words_the_issue_found_mean_one_thing():
    by_opt = defaultdict(dict)
    for cmd, option in _visible():
        by_opt[max(option.opts, key=len)][cmd] = option
    assert {type(o.type) for o in by_opt["--iou"].values()} == {click.Choice}
    assert set(by_opt["--iou"]) == {"anchor-audit", "mismatch", "assigners"}
    assert {"overlap", "errors", "kmeans", "anchor-audit"} <= set(by_opt["--iou-t"])
    assert {o.type.name for o in by_opt["--size"].values()} == {"integer"}
    assert "kmeans" not in by_opt["--anchors"]
    assert all(
        o.type is not None and isinstance(o.type, OutputPath) and o.type.dir_okay and not o.type.file_okay
        for o in by_opt["--plot"].values()
    )
    assert {o.type.name for o in by_opt["--draw"].values()} == {"integer"}
    assert {o.type.name for o in by_opt["--examples"].values()} == {"integer"}
    assert "errors" in by_opt["--examples"] and "--top" not in by_opt
    assert {"predict", "report"} <= set(by_opt["--output"])


def test_deprecated_aliases_are_hidden_and_name_a_real_option():
    aliases = [(cmd, o) for cmd, o in _all_options() if isinstance(o, DeprecatedAlias)]
    assert len(aliases) >= 6
    for cmd, alias in aliases:
        assert alias.hidden and not alias.expose_value
        command = main.commands[cmd]
        target = [
            o
            for o in command.params
            if alias.replaced_by in getattr(o, "opts", ()) and not isinstance(o, DeprecatedAlias)
        ]
        assert len(target) == 1, f"{cmd} {alias.opts[0]} -> {alias.replaced_by}: no such option"
        help_text = command.get_help(click.Context(command, info_name=cmd))
        assert alias.opts[0] + " " not in help_text.replace(alias.replaced_by, "")


@pytest.mark.parametrize(
    "old, new, extra",
    [
        (["overlap", "--iou", "0.3"], ["overlap", "--iou-t", "0.3"], []),
        (["overlap", "--iou=0.3"], ["overlap", "--iou-t", "0.3"], []),
        (["kmeans", "--anchors", "4"], ["kmeans", "-k", "4"], ["--evolve", "0", "--restarts", "1"]),
    ],
)
def test_an_old_spelling_works_and_warns(old, new, extra):
    runner = CliRunner()
    was = runner.invoke(main, [*old, *extra, "--format", "json"])
    now = runner.invoke(main, [*new, *extra, "--format", "json"])
    assert was.exit_code == 0 and now.exit_code == 0, was.output
    timeless = [{k: v for k, v in json.loads(r.stdout).items() if k != "seconds"} for r in (was, now)]
    assert timeless[0] == timeless[1]
    flag = old[1].split("=")[0]
    assert f"warning: {flag} is deprecated, use " in was.stderr
    assert "deprecated" not in now.stderr


def test_every_alias_warns_with_its_new_name():
    runner = CliRunner()
    for cmd, alias in [(c, o) for c, o in _all_options() if isinstance(o, DeprecatedAlias)]:
        res = runner.invoke(main, [cmd, alias.opts[0], "-1", "--help"])  # --help: nothing runs
        assert f"warning: {alias.opts[0]} is deprecated, use {alias.replaced_by}" in res.stderr, (cmd, res.output)


def test_commands_users_type_keep_working():
    runner = CliRunner()
    for args in (
        ["kmeans", "--size", "416", "--evolve", "0", "--restarts", "1"],
        ["overlap"],
        ["anchor-audit", "--iou", "giou"],
    ):
        res = runner.invoke(main, [*args, "--format", "json"])
        assert res.exit_code == 0, (args, res.output)
        assert "deprecated" not in res.stderr


def test_library_errors_name_the_parameter_and_the_cli_its_flag():
    from cocostat.data import load_dataset
    from cocostat.pairs import overlap

    with pytest.raises(OptionError, match=r"^iou must be a finite number in \[0, 1\], got 2.0$") as err:
        overlap(load_dataset(None), iou=2.0)
    assert err.value.param == "iou"
    with pytest.raises(OptionError, match=r"^k must be an integer >= 1, got 0$"):
        check_int("k", 0, 1)

    runner = CliRunner()
    res = runner.invoke(main, ["overlap", "--iou-t", "2"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "error: --iou-t must be a finite number in [0, 1], got 2.0"
    res = runner.invoke(main, ["kmeans", "-k", "0"])
    assert res.stderr.strip() == "error: --num-anchors must be an integer >= 1, got 0"
    res = runner.invoke(main, ["errors", "-d", "x.json", "--examples", "-1"])
    assert "error: --examples must be >= 0" in res.stderr


def test_a_message_naming_no_option_of_the_command_is_left_alone():
    from cocostat.cli import _for_the_cli

    assert (
        _for_the_cli(
            OptionError("chunk_pairs must be an integer >= 1, got 0", param="chunk_pairs"), main.commands["overlap"]
        )
        == "chunk_pairs must be an integer >= 1, got 0"
    )
    assert _for_the_cli(OptionError("no parameter here"), main.commands["overlap"]) == "no parameter here"
