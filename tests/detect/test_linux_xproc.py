"""UNB-L-003 and UNB-L-004 beyond their fixtures: what a self-write lands in decides its weight,
and code written where the own traced child resumes is an injection even without SETREGS."""

from __future__ import annotations

from tests.detect.rule_fixtures import TEXT, _setregs, _xwrite
from tests.detect.test_rules import RULES, _ctx
from unbacked.detect.rules.linux import ANON_SELF_WRITE_SCORE

L003, L004 = RULES["UNB-L-003"], RULES["UNB-L-004"]


def _child_pokes(tip: int | None, n: int = 8) -> list[dict]:
    """A tracer poking n words of code into its own child's text (the child resumes at tip)."""
    extra = {} if tip is None else {"start_address": tip}
    return [
        _xwrite("tr", "kid", TEXT + 8 * i, 8, pid=500, target_parent_pid=500, **extra)
        for i in range(n)
    ]


def test_self_write_into_file_text_outweighs_anonymous_code() -> None:
    rows = [
        _xwrite("sh", "sh", TEXT, 80, event_code="linux:write_mem", backing_path="/lib/libc.so.6"),
        _xwrite("jl", "jl", 0x7F00_0000_0000, 4096, event_code="linux:pwrite_mem",
                region_type="anonymous", backing_path=None, image="/usr/bin/julia"),
        _xwrite("pv", "pv", 0x7F00_0000_0000, 64, event_code="linux:process_vm_writev",
                region_type="anonymous", backing_path=None),
    ]  # fmt: skip
    out = {r["subject_uid"]: r for r in L003().evaluate(_ctx(rows)).to_pylist()}
    assert out["sh"]["score"] == L003.score
    assert "the text of /lib/libc.so.6" in out["sh"]["message"]
    assert out["sh"]["message"].endswith("through /proc/self/mem")
    assert out["jl"]["score"] == ANON_SELF_WRITE_SCORE < 60
    assert "anonymous executable memory" in out["jl"]["message"]
    assert out["pv"]["message"].endswith("through process_vm_writev")


def test_code_at_the_own_childs_instruction_pointer_is_injection() -> None:
    out = L004().evaluate(_ctx(_child_pokes(tip=TEXT)))
    assert out["subject_uid"].to_pylist() == ["kid"]
    assert "or it resumes there" in out["message"][0].as_py()
    # the same pokes while the child resumes elsewhere (a tracer patching its child): quiet
    assert L004().evaluate(_ctx(_child_pokes(tip=TEXT + 0x1000))).num_rows == 0
    assert L004().evaluate(_ctx(_child_pokes(tip=None))).num_rows == 0
    # a displaced step: 16 bytes where the child resumes stay under the code run
    assert L004().evaluate(_ctx(_child_pokes(tip=TEXT, n=2))).num_rows == 0


def test_pokeuser_rip_into_the_run_is_a_redirect() -> None:
    rows = [*_child_pokes(tip=TEXT + 0x1000), _setregs("tr", "kid", TEXT + 8,
            event_code="linux:ptrace_pokeuser")]  # fmt: skip
    assert L004().evaluate(_ctx(rows))["subject_uid"].to_pylist() == ["kid"]
