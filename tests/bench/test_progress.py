from bench.progress import _Progress


def test_a_piped_long_task_reports_each_tenth_and_a_short_one_stays_silent(capsys):
    now = [0.0]
    with _Progress(disable=True, get_time=lambda: now[0]) as bar:
        task = bar.add_task("fine-tuning", total=20, info="")
        for step in range(20):
            now[0] += 40  # each step takes 40 s
            bar.update(task, advance=1, info=f"loss {step}")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("fine-tuning: 2/20 (10%), 80 s so far, about 720 s left; loss 1")
    assert lines[-1].startswith("fine-tuning: 20/20 (100%)")

    with _Progress(disable=True, every=1e9) as bar:
        task = bar.add_task("latency", total=5)
        for _ in range(5):
            bar.advance(task)
    assert capsys.readouterr().err == ""
