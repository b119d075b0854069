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


@pytest.mark.parametrize("row, expect", [
    ({"key": 1, "prompt": "p", "instruction_id_list": "k", "kwargs": [{}]}, "instruction_id_list must be a list of strings"),
    ({"key": 1, "prompt": "p", "instruction_id_list": [3], "kwargs": [{}]}, "instruction_id_list must be a list of strings"),
    ({"key": 1, "prompt": "p", "instruction_id_list": ["a"], "kwargs": {"x": 1}}, "kwargs must be a list of objects"),
    ({"key": 1, "prompt": "p", "instruction_id_list": ["a"], "kwargs": [3]}, "kwargs must be a list of objects"),
    ({"key": 1, "prompt": "p", "instruction_id_list": ["a", "b"], "kwargs": [{}]}, "differ in length"),
    ({"id": "x", "prompt": ["a chat?"]}, "'prompt' must be a string"),
    ({"id": "", "prompt": "p"}, "'id' must be a non-empty string or an integer, got \"\""),
    ({"id": True, "prompt": "p"}, "got true"),
    ({"id": 1.5, "prompt": "p"}, "got 1.5"),
    ({"prompt": "p"}, "missing 'id'"),
])
def test_prompt_rows_refused_with_the_reason(row, expect):
    from spar.io import prompt_from_row

    with pytest.raises(ValueError, match=None) as e:
        prompt_from_row(row)
    assert expect in str(e.value), str(e.value)


def test_prompt_rows_read_in_every_form():
    from spar.io import prompt_from_row

    p = prompt_from_row({"key": 5, "prompt": "Write.", "instruction_id_list": ["a:b", "c:d"]})  # no kwargs: empty ones
    assert (p.id, p.text, p.source, [(c.kind, c.kwargs) for c in p.constraints]) == ("5", "Write.", "ifeval", [("a:b", {}), ("c:d", {})])
    p = prompt_from_row({"key": "k", "prompt": "W", "instruction_id_list": ["a:b"], "kwargs": [None]})
    assert p.constraints[0].kwargs == {}
    row = {"id": 0, "prompt": "Hi."}
    p = prompt_from_row(row)
    assert p.id == "0" and [(m.role, m.content) for m in p.messages] == [("user", "Hi.")]
    assert row == {"id": 0, "prompt": "Hi."}  # the caller's row is left as it was


def test_an_output_that_is_the_input_is_refused(tmp_path):
    from spar.io import refuse_same_path

    src = tmp_path / "a.jsonl"
    src.write_text("")
    refuse_same_path(src, tmp_path / "b.jsonl", None)
    with pytest.raises(DataError, match="the output is the input file"):
        refuse_same_path(src, tmp_path / "b.jsonl", tmp_path / "." / "a.jsonl")


def test_a_run_dir_is_never_here_or_above_or_someone_elses(tmp_path, monkeypatch):
    from spar.io import check_run_dir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep").mkdir()
    for bad in (tmp_path, ".", tmp_path.parent):
        with pytest.raises(DataError, match="the current directory or one above it"):
            check_run_dir(bad)
    monkeypatch.chdir(tmp_path / "deep")
    with pytest.raises(DataError, match="one above it"):
        check_run_dir("..")
    monkeypatch.chdir(tmp_path)
    check_run_dir(tmp_path / "new")  # not there yet: fine
    other = tmp_path / "other"
    other.mkdir()
    check_run_dir(other)  # empty: fine
    (other / "prompts.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="holds prompts.jsonl, which no spar run wrote here"):
        check_run_dir(other)
    (other / "manifest.json").write_text("{}")
    check_run_dir(other)  # a run's own folder: resumable
    theirs = tmp_path / "theirs"
    (theirs / "iter_1").mkdir(parents=True)
    with pytest.raises(DataError, match="holds iter_1"):
        check_run_dir(theirs)


def test_validation_errors_are_shortened_to_three_located_messages(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "x", "messages": [{"role": "robot", "content": 1}, {"role": "bot"}, {}, {}]}) + "\n")
    with pytest.raises(DataError) as e:
        read_prompts(path)
    msg = str(e.value)
    assert "messages.0.role" in msg and msg.count(";") == 2 and "messages.0.content" in msg


def test_the_appender_writes_utf8_lines_keeps_a_marker_while_open_and_cleans_up(tmp_path):
    from spar.io import marker

    path = tmp_path / "sub" / "rows.jsonl"
    with Appender(path) as out:
        assert marker(path).exists()
        out.write({"id": "é", "text": "naïve ☕"})
        out.write(Prompt(id="p", messages=[Message(role="user", content="ü")]))
    assert not marker(path).exists()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == '{"id": "é", "text": "naïve ☕"}' and '"content":"ü"' in lines[1] and len(lines) == 2
    with Appender(path) as out:  # appends, never truncates
        out.write({"id": "3"})
    assert len(path.read_text().splitlines()) == 3
    # a failure before the first row removes a file it created, and keeps one that was there
    fresh = tmp_path / "fresh.jsonl"
    with pytest.raises(RuntimeError):
        with Appender(fresh):
            raise RuntimeError("boom")
    assert not fresh.exists() and not marker(fresh).exists()
    with pytest.raises(RuntimeError):
        with Appender(path):
            raise RuntimeError("boom")
    assert len(path.read_text().splitlines()) == 3
    half = tmp_path / "half.jsonl"
    with pytest.raises(RuntimeError):
        with Appender(half) as out:
            out.write({"id": "1"})
            raise RuntimeError("boom")
    assert half.read_text() == '{"id": "1"}\n'


def test_resume_refuses_a_folder_and_names_the_line_of_a_torn_file_it_did_not_write(tmp_path):
    (tmp_path / "d.jsonl").mkdir()
    with pytest.raises(DataError):
        resume(tmp_path / "d.jsonl", Prompt)
    torn = tmp_path / "t.jsonl"
    torn.write_text('{"id": "a", "prompt": "x"}\n{"id": "b", "pro')
    with pytest.raises(DataError) as e:
        resume(torn, Prompt)
    assert str(e.value) == (f"{torn}:2: the last line has no newline, and no interrupted spar run left this file; "
                            "spar will not cut a file it did not write (complete the line or move the file)")
    assert resume(tmp_path / "absent.jsonl", Prompt) == ([], set())


def test_a_row_level_validation_error_is_located_at_the_row(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "x", "messages": [{"role": "system", "content": "only a system turn"}]}) + "\n")
    with pytest.raises(DataError) as e:
        read_prompts(path)
    assert str(e.value) == f"{path}:1: not a valid prompt row (row: Value error, a prompt needs at least one user message)"


def test_an_output_path_is_checked_before_any_work(tmp_path):
    import os

    from spar.io import check_output

    f, d = tmp_path / "f.jsonl", tmp_path / "d"
    f.write_text("")
    d.mkdir()
    check_output(tmp_path / "new.jsonl")
    check_output(f)  # an existing file is overwritten or resumed: fine
    check_output(d, folder=True)
    check_output(tmp_path / "new-dir", folder=True)
    with pytest.raises(DataError, match=r"d: a directory, not a file$"):
        check_output(d)
    with pytest.raises(DataError, match=r"f.jsonl: a file, not a directory$"):
        check_output(f, folder=True)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="pipe: .*not a regular file"):
        check_output(fifo)
    with pytest.raises(DataError, match="the output is the input file"):
        check_output(f, inputs=[None, tmp_path / "absent", f])
    link = tmp_path / "link.jsonl"
    link.symlink_to(f)
    with pytest.raises(DataError, match="the output is the input file"):
        check_output(link, inputs=[f])  # the same file under another name
    with pytest.raises(DataError, match="the output is the input file"):
        check_output(f, inputs=[link])
    check_output(tmp_path / "other.jsonl", inputs=[f, link])


def _row(i: str) -> Completion:
    return Completion(id=i, prompt=[Message(role="user", content=i)], completions=[i.upper()])


def test_map_rows_does_only_what_is_left_and_keeps_the_items_order(tmp_path):
    from spar.rows import map_rows

    out = tmp_path / "rows.jsonl"
    items = [f"p{i}" for i in range(7)]
    seen: list[list[str]] = []

    def work(part, emit, bar):
        seen.append(list(part))
        for i in reversed(part):  # rows may come back in any order
            emit(_row(i))

    # a first run that a budget stops after two chunks of three
    calls = iter([False, False, True])
    rows = map_rows(items, out, Completion, key=str, work=work, chunk=3, stop=lambda: next(calls))
    assert seen == [["p0", "p1", "p2"], ["p3", "p4", "p5"]] and [r.id for r in rows] == items[:6]
    # the rerun hands only the rest to work, and returns every row in the items' order
    seen.clear()
    todo: list[str] = []
    progress: list[tuple[int, int]] = []

    from contextlib import contextmanager

    @contextmanager
    def bar(total, done):
        progress.append((total, done))
        yield "BAR"

    def work2(part, emit, b):
        assert b == "BAR"
        work(part, emit, b)

    rows = map_rows(items, out, Completion, key=str, work=work2, chunk=3, started=todo.extend, progress=bar)
    assert seen == [["p6"]] and todo == ["p6"] and progress == [(7, 6)]
    assert [r.id for r in rows] == items and len(out.read_text().splitlines()) == 7
    # rows of items no longer asked for stay in the file but are not returned
    assert [r.id for r in map_rows(items[2:4], out, Completion, key=str, work=work)] == ["p2", "p3"]


def test_map_rows_keeps_what_was_emitted_before_a_failure(tmp_path):
    from spar.rows import map_rows

    out = tmp_path / "rows.jsonl"

    def work(part, emit, bar):
        emit(_row(part[0]))
        raise RuntimeError("the backend failed half way")

    with pytest.raises(RuntimeError):
        map_rows(["a", "b"], out, Completion, key=str, work=work, chunk=2)
    assert [r.id for r in read_jsonl(out, Completion)] == ["a"]
    rows = map_rows(["a", "b"], out, Completion, key=str, work=lambda part, emit, bar: [emit(_row(i)) for i in part])
    assert [r.id for r in rows] == ["a", "b"]


def test_write_text_is_atomic_keeps_the_mode_and_follows_a_link(tmp_path):
    import os
    import stat

    from spar.io import write_text

    f = tmp_path / "deep" / "er" / "out.txt"
    write_text(f, "one\n")  # parents made
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "new.txt", "x")
        assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == 0o640  # what the umask gives a new file
    finally:
        os.umask(old)
    f.chmod(0o604)
    write_text(f, "two\n")
    assert f.read_text() == "two\n" and stat.S_IMODE(f.stat().st_mode) == 0o604  # the mode it replaces
    link = tmp_path / "link.txt"
    link.symlink_to(f)
    write_text(link, "three\n")
    assert link.is_symlink() and f.read_text() == "three\n"
    with pytest.raises(TypeError):
        write_text(f, 3)  # a failure half way leaves the old file and no temporary file
    assert f.read_text() == "three\n" and sorted(p.name for p in f.parent.iterdir()) == ["out.txt"]


def test_json_readers_name_the_file_and_line(tmp_path):
    from spar.io import MAX_LINE, iter_json_lines, parse_json, read_json, read_manifest

    assert parse_json('{"a": [1, 2]}', "x") == {"a": [1, 2]}
    with pytest.raises(DataError, match=r"^f\.json:3: not valid JSON"):
        parse_json('{\n"a":\n nope}', "f.json", whole_file=True)
    with pytest.raises(DataError, match=r"^f\.jsonl:7: not valid JSON"):
        parse_json("{", "f.jsonl:7")
    with pytest.raises(DataError, match=r"^w: JSON nested too deep$"):
        parse_json("[" * 100_000 + "]" * 100_000, "w")
    with pytest.raises(DataError, match=r"^w: not usable JSON"):
        parse_json("1" * 5000, "w")
    with pytest.raises(DataError, match=r"^w: a \\u escape makes a lone surrogate"):
        parse_json('"\\ud800"', "w")
    assert parse_json('"\\u00e9"', "w") == "é"
    p = tmp_path / "rows.jsonl"
    p.write_bytes(b'{"a": 1}\n\n  \n{"b": 2}\n[1]\n')
    rows = iter_json_lines(p)
    assert next(rows) == (1, {"a": 1}) and next(rows) == (4, {"b": 2})
    with pytest.raises(DataError, match=r"rows\.jsonl:5: expected a JSON object, got list$"):
        next(rows)
    p.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl:2: not UTF-8 text \(byte 8 of the line\)$"):
        list(iter_json_lines(p))
    assert MAX_LINE == 256 << 20
    j = tmp_path / "m.json"
    j.write_text('{"stages": {"a": {}}}')
    assert read_manifest(j) == {"stages": {"a": {}}} and read_json(j) == {"stages": {"a": {}}}
    for bad in ('{"stages": []}', '{"stages": {"a": 1}}', "[1]"):
        j.write_text(bad)
        with pytest.raises(DataError, match=r"m\.json: not a spar manifest"):
            read_manifest(j)
    j.write_bytes(b'{"a": "\xfe"}')
    with pytest.raises(DataError, match=r"m\.json: not UTF-8 text \(byte 8\)$"):
        read_json(j)


def test_output_checks_name_what_is_wrong(tmp_path):
    import os

    from spar.io import check_input, check_output

    d = tmp_path / "d"
    d.mkdir()
    f = tmp_path / "f.txt"
    f.write_text("x")
    check_output(d / "new" / "deeper" / "out.jsonl")  # the nearest existing folder decides
    with pytest.raises(DataError, match=r"f\.txt/out\.jsonl: Not a directory$"):  # a file where a folder is named
        check_output(f / "out.jsonl")
    with pytest.raises(DataError, match=r"d: a directory, not a file$"):
        check_output(d)
    with pytest.raises(DataError, match=r"f\.txt: a file, not a directory$"):
        check_output(f, folder=True)
    with pytest.raises(DataError, match="the output is the input file"):
        check_output(f, inputs=[None, tmp_path / "missing", f])
    with pytest.raises(DataError, match=r"a directory, not a file$"):
        check_input(d, file=True)
    check_input(d)
    if os.geteuid() != 0:  # root may write anywhere
        d.chmod(0o500)
        try:
            with pytest.raises(DataError, match=r"no permission to write in"):
                check_output(d / "out.jsonl")
        finally:
            d.chmod(0o700)
