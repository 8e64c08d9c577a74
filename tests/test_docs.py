"""The documentation works: every Python and shell block of README.md and docs/ runs, every
relative link and anchor resolves, and every code name cited (a dotted ``keras_imae`` name,
a ``RunConfig`` field, a flag, a ``.py`` file; also ``keras_imae`` names in docstrings) exists.

A block runs as written, in a fresh process, in a fresh folder that holds ``mine.npz`` (the
digits as a user's own npz file) and links to ``scripts/`` and ``benchmarks/``; the installed
commands (``keras-imae-train``, ...) are on ``PATH``, each calling the function its
console-script entry point calls, so a fresh checkout needs no ``pip install`` for them.
Where a block would take minutes, an HTML comment right above it shrinks it, visibly in the
markdown source:
``<!-- test: replace "--epochs=40" "--epochs=2" -->`` (one or more ``replace "A" "B"``).
``expect "TEXT"`` there also requires ``TEXT`` in the block's output (a benchmark's table row:
its block is then its smoke run, see tests/test_benchmarks.py).
"""
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = [os.path.join(ROOT, "README.md")] + sorted(  # docs/ and its folders (docs/studies/)
    os.path.join(folder, name) for folder, _, names in os.walk(os.path.join(ROOT, "docs"))
    for name in names if name.endswith(".md"))
BLOCK = re.compile(r"(?:<!-- test: (?P<directives>[^>]*?) -->\n)?"
                   r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.S | re.M)
RUN = {"python": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _blocks():
    for path in DOCS:
        text = open(path, encoding="utf-8").read()
        for match in BLOCK.finditer(text):
            if match["lang"] in RUN:
                line = text.count("\n", 0, match.start()) + 1
                name = f"{os.path.relpath(path, ROOT)}:{line}"
                yield pytest.param(match["lang"], match["body"], match["directives"] or "",
                                   id=name)


def _apply(body, directives):
    """``(body as run, [text its output must contain])`` under the block's directives."""
    words, expected = shlex.split(directives), []
    while words:
        if words[0] == "replace" and len(words) >= 3:
            old, new, words = words[1], words[2], words[3:]
            assert old in body, f"the directive replaces {old!r}, which is not in the block"
            body = body.replace(old, new)
        elif words[0] == "expect" and len(words) >= 2:
            expected.append(words[1])
            words = words[2:]
        else:
            raise ValueError(f"Bad test directive {directives!r}: expected replace \"A\" \"B\""
                             " or expect \"TEXT\" ...")
    return body, expected


@pytest.fixture
def scratch(tmp_path):
    """A fresh user's working folder: their own npz file, and the project's scripts."""
    from sklearn.datasets import load_digits

    cwd = tmp_path / "user"
    cwd.mkdir()
    digits = load_digits()
    x, y = digits.images.astype("uint8"), digits.target
    np.savez(cwd / "mine.npz", x_train=x[:1400], y_train=y[:1400], x_test=x[1400:],
             y_test=y[1400:])
    for folder in ("scripts", "benchmarks"):
        os.symlink(os.path.join(ROOT, folder), cwd / folder)
    bin_dir = tmp_path / "bin"  # setup.cfg's console scripts, as pip writes them
    bin_dir.mkdir()
    from keras_imae import cli

    for name in cli.COMMANDS:
        shim = bin_dir / f"keras-imae-{name.replace('_', '-')}"
        shim.write_text(f"#!{sys.executable}\nfrom keras_imae import cli\ncli.{name}()\n")
        shim.chmod(0o755)
    return cwd


@pytest.mark.slow
@pytest.mark.parametrize("lang, body, directives", list(_blocks()))
def test_block_runs(lang, body, directives, scratch, tmp_path):
    body, expected = _apply(body, directives)  # every block starts in a fresh folder
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    if RUN[lang] == "python":
        script = tmp_path / "block.py"
        script.write_text(body)
        # a quick start that warns is not quick: scikit-learn's unscaled-data warning fails it
        command = [sys.executable, "-W", "error::sklearn.exceptions.ConvergenceWarning",
                   str(script)]
    else:
        env["PATH"] = os.pathsep.join([str(tmp_path / "bin"), os.path.dirname(sys.executable),
                                       env["PATH"]])
        command = ["bash", "-euo", "pipefail", "-c", body]
    proc = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for text in expected:
        assert text in proc.stdout, (text, proc.stdout[-4000:])


def test_directives_replace_and_expect():
    directives = 'replace "--epochs=40" "--epochs=1" expect "| a |"'
    assert _apply("run --epochs=40\n", directives) == ("run --epochs=1\n", ["| a |"])
    for bad in ('expect', 'replace "--epochs=40"', 'insert "x"'):
        with pytest.raises(ValueError, match="Bad test directive"):
            _apply("run --epochs=40\n", bad)


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path):
    seen, anchors = {}, set()
    in_code = False
    for line in open(path, encoding="utf-8"):
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            slug = _slug(line.lstrip("#"))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for path in DOCS:
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # links in code: not links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            file_part, _, anchor = target.partition("#")
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                if file_part else path
            if not os.path.exists(resolved):
                broken.append((os.path.relpath(path, ROOT), target, "no such file"))
            elif anchor and anchor not in _anchors(resolved):
                broken.append((os.path.relpath(path, ROOT), target, "no such heading"))
    assert broken == []


def test_the_studies_are_checked_too():
    # docs/studies/ is walked like docs/: its blocks run, its links and code names are checked
    assert any(os.path.join("docs", "studies", "") in path for path in DOCS)


def test_readme_is_a_front_page():
    lines = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read().count("\n")
    assert lines <= 300
    assert len(list(_blocks())) >= 5  # the blocks above exist and are collected


def test_ci_runs_the_readme_s_install_and_test_commands():
    # README's "pip install -e ... && python -m pytest ..." line; .ci/run runs both parts as
    # they are (the test command may add report options, e.g. -ra)
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    line = next(l for l in readme.splitlines() if "&& python -m pytest" in l)
    install, test = (part.strip() for part in line.split("#")[0].split("&&"))
    ci = open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8").read().splitlines()
    assert install in ci
    assert [l for l in ci if l == test or l.startswith(test + " -")], (test, ci)


# -- every code name the docs cite exists -------------------------------------------------------
CODE_SPAN = re.compile(r"`([^`\n]+)`")
# a package name, alone or as keras_imae.xxx; not keras.losses.Loss (preceded by a dot)
DOTTED = re.compile(r"(?<![\w.])(?:keras_imae|recipe|training|losses|noise|data|models|callbacks"
                    r"|label_issues)(?:\.[A-Za-z_]\w*)+")
FILE_SUFFIXES = {"py", "md", "csv", "png", "json", "npz", "keras", "pb", "flags"}
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9_]*)(?![\w-])")  # not pip's --no-deps
PY_FILE = re.compile(r"(?<![\w/.-])([\w/]+\.py)\b")
ABSL_FLAGS = {"help", "helpfull", "helpshort", "flagfile", "undefok", "verbosity"}


def _cited(pattern, *, spans_only=True):
    """``{name: [where, ...]}`` of ``pattern``'s matches in the docs' code spans (or text)."""
    found = {}
    for path in DOCS:
        text = open(path, encoding="utf-8").read()
        chunks = CODE_SPAN.findall(text) if spans_only else [text]
        for chunk in chunks:
            for name in pattern.findall(chunk):
                found.setdefault(name, []).append(os.path.relpath(path, ROOT))
    return found


def _resolves(dotted):
    import importlib

    first, *rest = dotted.split(".")
    parts = {"keras_imae": ["keras_imae"], "recipe": ["keras_imae", "config", "recipe"]}.get(
        first, ["keras_imae", first]) + rest
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _known_flags():
    """Every command's flags, absl's own, and the benchmarks' (absl DEFINEs)."""
    import importlib
    from absl import flags

    from keras_imae import cli

    known = set(ABSL_FLAGS)
    for name in cli.COMMANDS:
        flag_values = flags.FlagValues()
        importlib.import_module(f"keras_imae.cli._{name}").define_flags(flag_values)
        known |= set(flag_values)
    for name in os.listdir(os.path.join(ROOT, "benchmarks")):
        if name.endswith(".py"):
            source = open(os.path.join(ROOT, "benchmarks", name), encoding="utf-8").read()
            known |= set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", source))
    return known


def test_every_code_name_the_docs_cite_exists():
    from keras_imae import training

    missing = [(name, where[0]) for name, where in _cited(DOTTED).items()
               if name.rsplit(".", 1)[-1] not in FILE_SUFFIXES and not _resolves(name)]
    fields = set(training.RunConfig.__dataclass_fields__)
    for span, where in _cited(re.compile(r"RunConfig\(([^)]*)\)")).items():
        missing += [(f"RunConfig({key}=)", where[0])
                    for key in re.findall(r"(\w+)=", span) if key not in fields]
    known = _known_flags()
    missing += [(f"--{name}", where[0]) for name, where in _cited(FLAG).items()
                if name not in known and not (name.startswith("no") and name[2:] in known)]
    files = {os.path.basename(p) for p in subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()}
    files |= {n for _, _, names in os.walk(ROOT) for n in names if n.endswith(".py")}
    missing += [(name, where[0]) for name, where in _cited(PY_FILE, spans_only=False).items()
                if not os.path.exists(os.path.join(ROOT, name))
                and os.path.basename(name) not in files]
    assert not missing, "cited but not found:\n" + "\n".join(f"{n} ({w})" for n, w in missing)


def test_every_keras_imae_name_the_docstrings_cite_exists():
    cited = set()
    for folder, _, names in os.walk(os.path.join(ROOT, "keras_imae")):
        for name in names:
            if name.endswith(".py"):
                source = open(os.path.join(folder, name), encoding="utf-8").read()
                cited |= {(name, dotted) for dotted in re.findall(r"`~?(keras_imae(?:\.\w+)+)",
                                                                    source)}
    assert sorted((where, name) for where, name in cited if not _resolves(name)) == []
