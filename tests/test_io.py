import json

import pytest

from spar.io import Appender, DataError, read_jsonl, read_prompts, resume, write_jsonl
from spar.types import Completion, Judgment, Message, Node, PreferencePair, Prompt, Tree


def test_records_round_trip(tmp_path):
    p = Prompt(id="a", messages=[Message(role="user", content="hi")], constraints=[{"kind": "punctuation:no_comma"}])
    j = Judgment(follows=True, votes=[True, None, True], rationale="fine", by="hybrid")
    t = Tree(id="a#0", prompt_id="a", nodes=[Node(id=0, parent=None, depth=0, response="x", judgment=j),
                                   Node(id=1, parent=0, depth=1, response="y", judgment=j)],
             solved=True, expanded=1, strategy="bfs", solution=1)
    pair = PreferencePair(prompt=p.messages, chosen=[Message(role="assistant", content="y")],
                          rejected=[Message(role="assistant", content="x")], origin={"tree": "a"})
    for model, row in [(Prompt, p), (Tree, t), (PreferencePair, pair), (Judgment, j)]:
        path = tmp_path / f"{model.__name__}.jsonl"
        write_jsonl(path, [row, row])
        back = read_jsonl(path, model)
        assert back == [row, row]
    assert t.path() == [0, 1]
    assert j.value == pytest.approx(2 / 3) and j.abstentions == 1


def test_both_prompt_forms(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"id": 7, "prompt": "Say hi.", "constraints": [{"kind": "punctuation:no_comma", "kwargs": {}}]}) + "\n"
        + json.dumps({"key": 1000, "prompt": "Write 300+ words.", "instruction_id_list": ["length_constraints:number_words"],
                      "kwargs": [{"relation": "at least", "num_words": 300, "unused": None}]}) + "\n"
        + json.dumps({"id": "c", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Hi"}]}) + "\n"
    )
    a, b, c = read_prompts(path)
    assert a.id == "7" and a.text == "Say hi." and a.constraints[0].kind == "punctuation:no_comma"
    assert b.id == "1000" and b.source == "ifeval" and b.constraints[0].kwargs == {"relation": "at least", "num_words": 300}
    assert c.text == "Hi" and len(c.messages) == 2


@pytest.mark.parametrize(
    "line, expect",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"prompt": "no id"}', "missing 'id'"),
        ('{"id": "x", "messages": [{"role": "robot", "content": "hi"}]}', "messages.0.role"),
        ('{"id": "x", "messages": [{"role": "system", "content": "hi"}]}', "at least one user message"),
        ('{"id": "x", "prompt": "p", "surprise": 1}', "surprise"),
    ],
)
def test_bad_prompt_rows_name_file_and_line(tmp_path, line, expect):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "ok", "prompt": "fine"}\n\n' + line + "\n")
    with pytest.raises(DataError) as e:
        read_prompts(path)
    assert f"{path}:3:" in str(e.value) and expect in str(e.value)


def test_duplicate_ids_and_future_schema(tmp_path):
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n')
    with pytest.raises(DataError, match=r"dup.jsonl:2: duplicate id 'a' \(first at line 1\)"):
        read_prompts(path)
    path.write_text('{"schema_version": 99, "id": "a", "prompt": [], "completions": []}\n')
    with pytest.raises(DataError, match="schema_version 99"):
        read_jsonl(path, Completion)


def test_resume_cuts_a_torn_last_line(tmp_path):
    path = tmp_path / "out.jsonl"
    rows = [Completion(id=str(i), prompt=[Message(role="user", content="q")], completions=["a"]) for i in range(3)]
    with Appender(path) as out:
        for r in rows:
            out.write(r)
    from spar.io import marker

    marker(path).touch()  # a killed Appender leaves its marker
    with path.open("a") as f:
        f.write('{"schema_version": 1, "id": "3", "prom')  # killed mid-write
    back, ids = resume(path, Completion)
    assert back == rows and ids == {"0", "1", "2"}
    assert path.read_text().endswith("\n") and path.read_text().count("\n") == 3


def test_atomic_write_leaves_no_temp_on_failure(tmp_path):
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"a": 1}])

    def boom():
        yield {"a": 2}
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        write_jsonl(path, boom())
    assert path.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]


def test_a_resume_cuts_only_a_torn_line_that_spar_left(tmp_path):
    from spar.io import Appender, DataError, marker, resume
    from spar.types import Completion

    row = Completion(id="a", prompt=[{"role": "user", "content": "q"}], completions=["x"])
    out = tmp_path / "out.jsonl"
    with Appender(out) as f:
        f.write(row)
    assert not marker(out).exists()  # a clean close leaves no marker
    # a file spar did not leave half-written: its last line without newline is an error, and untouched
    user = tmp_path / "user.jsonl"
    user.write_text(row.model_dump_json() + "\n" + row.model_copy(update={"id": "b"}).model_dump_json())
    before = user.read_bytes()
    with pytest.raises(DataError, match=r"user.jsonl:2: the last line has no newline"):
        resume(user, Completion)
    assert user.read_bytes() == before
    # a killed append (the marker is left) is cut back to its last whole row
    marker(out).touch()
    with out.open("a") as f:
        f.write('{"id": "b", "prom')
    rows, keys = resume(out, Completion)
    assert keys == {"a"} and out.read_text().endswith("\n")


def test_trees_with_cycles_or_dangling_ids_are_bad_input(tmp_path):
    import json

    from spar.io import DataError, read_jsonl
    from spar.types import Tree

    def tree(nodes, **kw):
        return {"id": "p#0", "prompt_id": "p", "nodes": nodes, "solved": False, "expanded": 1, "strategy": "bfs", **kw}

    def node(i, parent):
        return {"id": i, "parent": parent, "depth": 0, "response": "r"}

    bad = {
        "cycle": tree([node(0, None), node(1, 2), node(2, 1)]),
        "dangling parent": tree([node(0, None), node(1, 7)]),
        "dangling solution": tree([node(0, None)], solution=3),
        "empty": tree([]),
        "repeated ids": tree([node(0, None), node(0, None)]),
    }
    for name, t in bad.items():
        p = tmp_path / f"{name}.jsonl"
        p.write_text(json.dumps(tree([node(0, None)])) + "\n" + json.dumps(t) + "\n")
        with pytest.raises(DataError, match=r"\.jsonl:2"):
            read_jsonl(p, Tree)


def test_a_whole_file_write_gets_the_umask_mode_or_keeps_the_old_one(tmp_path):
    import os
    import stat

    from spar.io import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "new.json", "{}")
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
        (tmp_path / "kept.json").write_text("x")
        (tmp_path / "kept.json").chmod(0o640)
        write_text(tmp_path / "kept.json", "{}")
        assert stat.S_IMODE((tmp_path / "kept.json").stat().st_mode) == 0o640
    finally:
        os.umask(old)
