"""Every CLI subcommand, the default spec, and the bad-spec errors (which name the key)."""

import json
import os
import subprocess
import sys
import tomllib

import pytest

from dynamics.cli import _parser, main
from dynamics.experiments import DEFAULT_SPEC, SpecError, parse_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = """
experiment = "jepa_vs_mae"
title = "tiny"
[problem]
lam = [1.0, 0.5]
rho = [1.0, 0.8]
init_scale = 0.1
[run]
depths = [1, 2]
lr = 0.05
records = 50
"""


def test_sims_default_spec_is_the_builtin_one():
    with open(os.path.join(ROOT, "sims", "jepa_vs_mae.toml"), "rb") as fh:
        assert parse_spec(tomllib.load(fh)) == parse_spec(DEFAULT_SPEC)


def test_run_writes_table_figure_json_npz(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    out = tmp_path / "out"
    assert main(["run", str(spec), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "critical times" in printed and "simulation" in printed
    files = set(os.listdir(out))
    # the figure is named after the spec file (two specs of one experiment never share a figure name)
    assert {"tiny.png", "summary.json", "table.txt", "jepa_L1_sim.npz", "mae_L2_theory.npz"} <= files
    # one verdict line per cross-check on the terminal and in table.txt
    for text in (printed, (out / "table.txt").read_text()):
        assert sum(line.startswith("crosscheck ") for line in text.splitlines()) == 2 * 2
        assert "PASS" in text and "learning order jepa L=2" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 0 and len(summary["table"]) == 2 * 2 * 2
    # every row's simulated critical time agrees with the theory (lr = 0.05: Euler error < 3 %)
    assert all(row["rel_error"] < 0.03 for row in summary["table"])


def test_seed_and_x32_flags(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    # float64 unless --x32 (argparse's store_false for --x64 used to make float32 the default)
    assert _parser().parse_args(["demo"]).x32 is False and _parser().parse_args(["run", "s"]).x32 is False
    assert _parser().parse_args(["demo", "--x32"]).x32 is True
    assert main(["run", str(spec), "--out", str(tmp_path / "o64"), "--no-progress"]) == 0
    from dynamics import load
    assert load(tmp_path / "o64" / "jepa_L1_sim.npz").settings["dtype"] == "float64"
    out = tmp_path / "o32"
    assert main(["run", str(spec), "--out", str(out), "--seed", "4", "--x32", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seed"] == 4
    assert load(out / "jepa_L1_sim.npz").settings["dtype"] == "float32"


def test_solve_and_list(tmp_path, capsys):
    assert main(["solve", os.path.join(ROOT, "sims", "jepa_vs_mae.toml")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {f"{o}_L{L}" for o in ("jepa", "mae") for L in (1, 2, 3)}
    assert out["jepa_L3"][1] < out["jepa_L3"][0]          # higher rho first when deep
    assert main(["list", "--dir", os.path.join(ROOT, "sims")]) == 0
    listed = capsys.readouterr().out
    assert "jepa_vs_mae.toml" in listed and "noisy_features_static.toml" in listed
    assert main(["list", "--dir", str(tmp_path)]) == 1


@pytest.mark.parametrize("text,match", [
    (TINY.replace("lr = 0.05", "lr = 0.05\nlearning_rate = 1"), "unknown key run.'learning_rate'"),
    (TINY.replace("lr = 0.05", "lr = 'fast'"), "run.lr must be int/float"),
    (TINY.replace("lr = 0.05", ""), "missing required key run.lr"),
    (TINY.replace("init_scale = 0.1", "init_scale = true"), "problem.init_scale must be"),
    (TINY.replace('experiment = "jepa_vs_mae"', 'experiment = "byol"'), "experiment must be one of"),
    (TINY.replace("depths = [1, 2]", "depths = [0]"), r"run.depths (entries|must be integers)"),
    # values checked at parse time, before anything runs (each of these used to crash, hang or pass)
    (TINY.replace("records = 50", "records = -5"), r"run.records must be an integer >= 2, got -5"),
    (TINY.replace("records = 50", "records = 0"), r"run.records must be an integer >= 2"),
    (TINY.replace("lr = 0.05", "lr = 0.05\nhorizon = -1.0"), r"run.horizon must be a finite number > 0"),
    (TINY.replace("lr = 0.05", "lr = 0"), r"run.lr must be a finite number > 0, got 0"),
    (TINY.replace("lr = 0.05", "lr = 1e-12"), r"run.horizon = 1.3 with run.lr = 1e-12 at depth 1 \(jepa\): steps = .* step budget"),
    (TINY.replace("depths = [1, 2]", "depths = [100000]"), r"run.depths must be integers in \[1, 64\]"),
    (TINY.replace("lr = 0.05", "lr = 0.05\nfraction = 1.5"), r"run.fraction must be a number in \(0, 1\)"),
    (TINY.replace("[run]", "[runs]"), "unknown key 'runs'"),
    (TINY.replace("rho = [1.0, 0.8]", "rho = [1.0]"), r"\[problem\]: lam and rho must have the same shape"),
    ("experiment = [", "not valid TOML"),
    (TINY.replace("depths = [1, 2]", "depths = []"), r"run.depths must hold at least one value, got an empty list"),
    (TINY.replace("lr = 0.05", "lr = 0.05\nhorizon = 1e300"), r"run.horizon = 1e\+300 .* steps = 3.97e\+302 x"),
])
def test_bad_spec_errors_name_the_key(tmp_path, capsys, text, match):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dynamics: bad spec:")
    import re
    assert re.search(match, err), err


def test_parse_spec_refuses_non_table():
    with pytest.raises(SpecError):
        parse_spec(["not", "a", "table"])


def test_missing_spec_file(capsys):
    assert main(["run", "does/not/exist.toml"]) == 2
    assert "No such file" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dynamics", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "demo" in out.stdout and "solve" in out.stdout


@pytest.mark.parametrize("spec", ["dln_staircase", "attention_staircase", "dense_attention_rank"])
def test_rank_growth_specs_parse_and_list(spec):
    from dynamics.experiments import load_spec
    s = load_spec(os.path.join(ROOT, "sims", f"{spec}.toml"))
    assert s["experiment"] == spec


def test_run_small_dln_staircase(tmp_path, capsys):
    spec = tmp_path / "dln.toml"
    spec.write_text('experiment = "dln_staircase"\n[problem]\nn = 30\nd = 3\n'
                    'beta_star = [1.0, -0.5, 0.0]\nseed = 1\n[run]\nalphas = [1e-4, 1e-16]\n')
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "predicted jumps" in out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert len(summary["stages"]["times"]) == 3                    # 0 and two jumps
    assert (tmp_path / "o" / "dln.png").stat().st_size > 10_000          # named after the spec file
    assert main(["solve", str(spec)]) == 0
    assert json.loads(capsys.readouterr().out)["converged"] is True


@pytest.mark.parametrize("text,match", [
    ('experiment = "dln_staircase"\n[problem]\nn = 30\nd = 3\n[run]\nalphas = [2.0]\n', r"run.alphas entries"),
    ('experiment = "dln_staircase"\n[problem]\nn = 30\n[run]\nalphas = [0.1]\n', "missing required key problem.d"),
    ('experiment = "dln_staircase"\n[problem]\nn = 30\nd = 3\nbeta_star = [1.0]\n[run]\nalphas = [0.1]\n',
     "beta_star must have d = 3"),
    ('experiment = "dense_attention_rank"\n[problem]\n[run]\ninit_scales = [1.0]\nlr = 0.1\n',
     "missing required key run.steps"),
    ('title = "x"\n', "missing required key experiment"),
    # issue 27, item 9: each used to name the wrong key, dump an array or fail deep inside
    ('experiment = "dln_staircase"\n[problem]\nn = 30\nd = 3\ncorrelation = nan\n[run]\nalphas = [0.1]\n',
     r"correlation must be finite"),
    ('experiment = "dln_staircase"\n[problem]\nn = 30\nd = 3\n[run]\nalphas = []\n',
     r"run.alphas must hold at least one value"),
    ('experiment = "stepwise_staircase"\n[problem]\ngammas = [1.0, 0.5]\ninit_scale = 5.0\n[run]\nlr = 0.01\n',
     r"problem.init_scale = 5: every mode starts at or past half"),
    ('experiment = "jepa_vs_mae"\n[problem]\ngenerative = "dynamic"\nsignal = [1.0]\nnoise = [0.1]\n'
     'init_scale = 0.1\n[run]\ndepths = [1]\nlr = 0.05\n', r"problem.generative must be 'static' or 'temporal', got 'dynamic'"),
    ('experiment = "jepa_vs_mae"\n[problem]\ngenerative = "static"\nsignal = [1.0]\nnoise = [0.1]\nlam = [1.0]\n'
     'init_scale = 0.1\n[run]\ndepths = [1]\nlr = 0.05\n', r"problem.generative and problem.lam"),
])
def test_rank_spec_errors(tmp_path, capsys, text, match):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    import re
    assert re.search(match, capsys.readouterr().err)


@pytest.mark.parametrize("spec", ["byol_phase_portrait", "byol_alignment", "identity_head", "stepwise_staircase"])
def test_head_specs_parse(spec):
    from dynamics.experiments import load_spec
    assert load_spec(os.path.join(ROOT, "sims", f"{spec}.toml"))["experiment"] == spec


@pytest.mark.parametrize("spec", ["byol_phase_portrait", "stepwise_staircase"])
def test_run_head_specs(tmp_path, capsys, spec):
    out = tmp_path / spec
    assert main(["run", os.path.join(ROOT, "sims", f"{spec}.toml"), "--out", str(out), "--no-progress"]) == 0
    assert (out / f"{spec}.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    if spec == "byol_phase_portrait":
        assert summary["fate"][0] == "collapsed" and summary["fate"][1] == "learned"   # either side of p-
        assert summary["max_abs_error_p"] < 5e-3
    else:
        assert summary["max_abs_error"] < 1e-2
    capsys.readouterr()
    assert main(["solve", os.path.join(ROOT, "sims", f"{spec}.toml")]) == 0
    solved = json.loads(capsys.readouterr().out)
    assert ("p_minus" in solved) if spec == "byol_phase_portrait" else (len(solved["step_times"]) == 4)


def test_solve_without_a_theory_says_so_not_bad_spec(capsys):
    import os
    spec = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sims", "identity_head.toml")
    assert main(["solve", spec]) == 2
    err = capsys.readouterr().err
    assert "no closed-form theory" in err and "bad spec" not in err


def test_library_errors_from_a_spec_are_one_line_exit_2(tmp_path, capsys):
    """A spec value that a library check refuses (or that is not UTF-8) ends in one 'dynamics:' line
    and exit 2, not a traceback."""
    from dynamics.cli import main
    bad = tmp_path / "latin1.toml"
    bad.write_bytes('title = "caf\u00e9"\n'.encode("latin-1"))
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dynamics:") and "UTF-8" in err[0]


def test_help_is_plain_text_and_names_the_spec_argument():
    out = subprocess.run([sys.executable, "-m", "dynamics", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "``" not in out.stdout and "dynamics run sims/jepa_vs_mae.toml" in out.stdout
    run = subprocess.run([sys.executable, "-m", "dynamics", "run", "--help"], capture_output=True, text=True)
    assert "path of an experiment spec" in run.stdout



def test_a_failed_crosscheck_exits_1_with_the_outputs_written(tmp_path, capsys):
    """lr = 1.0 on the tiny spec: gradient descent's step error fails the cross-check -> exit 1 (not 0),
    the outputs are still written, the verdict line says FAIL and advises a smaller lr."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY.replace("lr = 0.05", "lr = 1.0"))
    out = tmp_path / "o"
    assert main(["run", str(spec), "--out", str(out), "--no-progress"]) == 1
    cap = capsys.readouterr()
    assert "FAIL" in cap.out and "lr = " in cap.out and "cross-check(s) FAILED" in cap.err
    assert (out / "summary.json").exists() and (out / "tiny.png").exists()
    from dynamics.cli import failed_checks
    assert failed_checks({"a": {"outcome": "passed"}, "b": [{"outcome": "failed"}]}) == ["b[0]"]
    assert failed_checks({"c": {"x": {"outcome": "failed"}}, "spec": {"outcome": "failed"}}) == ["c.x"]


def test_byol_spec_lengths_and_stepwise_single_random_run(tmp_path, capsys):
    """BYOL p0 / s0 of different lengths is refused at parse time; stepwise with random_runs = 1 (one run,
    not a batch) runs and draws (it used to crash after the run)."""
    spec = tmp_path / "b.toml"
    spec.write_text('experiment = "byol_phase_portrait"\n[problem]\nsigma2 = 0.5\neta = 0.05\np0 = [0.1, 0.2]\n'
                    's0 = [0.1]\n[run]\n')
    assert main(["run", str(spec), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "p0 and problem.s0 must have one entry per mode each" in capsys.readouterr().err
    spec = tmp_path / "s.toml"
    spec.write_text('experiment = "stepwise_staircase"\n[problem]\ngammas = [1.0, 0.6]\n[run]\nrandom_runs = 1\n')
    assert main(["run", str(spec), "--out", str(tmp_path / "s"), "--no-progress"]) == 0
    assert (tmp_path / "s" / "s.png").stat().st_size > 10_000


def test_seed_out_of_range_bom_and_out_file(tmp_path, capsys):
    """Issue 27, item 9: --seed outside [0, 2**63) is an argparse error (exit 2) like a spec's run.seed; a spec
    saved with a UTF-8 byte-order mark parses; --out naming a file is refused before anything runs."""
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    for bad in ("-5", str(2 ** 70)):
        with pytest.raises(SystemExit) as e:
            main(["run", str(spec), "--seed", bad])
        assert e.value.code == 2 and "--seed" in capsys.readouterr().err
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + TINY.encode())
    assert main(["solve", str(bom)]) == 0
    capsys.readouterr()
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert main(["run", str(spec), "--out", str(afile), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
