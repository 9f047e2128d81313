"""The offline backend: deterministic and useful."""

from __future__ import annotations

from services.core.ai import LaneView, Prompts, ScriptDraft, SessionContext, Tier
from services.core.ai.offline import OfflineBackend, decision_tree, templatize


def test_templatize_finds_hosts_ips_users_paths_and_literals() -> None:
    script = ScriptDraft(
        language="powershell",
        body=(
            '$server = "fs01.contoso.local"\n'
            "Test-Connection 10.20.30.40\n"
            "Add-ADGroupMember -Identity Finance -Members CONTOSO\\jdoe\n"
            "Copy-Item C:\\Temp\\report.csv \\\\fs01\\share\\reports\n"
            '$greeting = "Quarterly numbers"\n'
            "Write-Host 10.20.30.40\n"
        ),
    )
    result = templatize(script)
    names = {p.name: p.default for p in result.parameters}
    assert names["host_name"] == "fs01.contoso.local"
    assert names["ip_address"] == "10.20.30.40"
    assert names["user_name"] == "CONTOSO\\jdoe"
    assert names["windows_path"] == "C:\\Temp\\report.csv"
    assert names["unc_path"] == "\\\\fs01\\share\\reports"
    assert names["greeting"] == "Quarterly numbers"
    assert result.body.count("{{ip_address}}") == 2  # same value, one parameter
    for value in names.values():
        assert value not in result.body
    assert templatize(script) == result  # deterministic


def test_decision_tree_is_valid_and_matches_the_problem() -> None:
    tree = decision_tree("User cannot print to the 3rd floor printer")
    ids = {n.id for n in tree.nodes}
    assert tree.root in ids
    for node in tree.nodes:
        for option in node.options:
            assert option.next in ids
        if not node.options:
            assert node.kind in ("resolution", "escalation")
    assert "spooler" in " ".join(n.text for n in tree.nodes).lower()


async def test_fix_is_built_from_failed_checks_and_facts() -> None:
    ctx = SessionContext(
        ticket_ref="CW #1",
        title="Slow logon",
        problem="Logon takes 5 minutes",
        facts=("GPO processing takes 4 minutes",),
        lane=(
            LaneView(kind="check", title="Check DC reachability", status="failed", output="timeout to dc02"),
        ),
    )
    fix = await OfflineBackend().suggest_fix(ctx, tier=Tier.FAST, prompts=Prompts())
    assert "Check DC reachability" in fix.title
    assert any("timeout to dc02" in step for step in fix.steps)
    assert any("GPO processing" in step for step in fix.steps)
