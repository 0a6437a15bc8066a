"""`maker sim-server` over real HTTP, reached through real litellm.

The server is the simulator behind an OpenAI-compatible endpoint (the project's test
double, at the model boundary); litellm, the retry policy, timeouts, rate limits and the
runner are the real code.  Results are simulated.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from maker.cluster import ModelSpec, SampleRequest
from maker.cluster.http.litellm_client import LiteLLMClient, LiteLLMConfig
from maker.cluster.http.ratelimit import TokenBucket
from maker.cluster.simulated.sim_server import FAULT_KINDS, SimServer, SimServerConfig
from maker.tasks import get_task
from maker.tasks.builtin.hanoi_rules import premise_from_prompt

from maker import VotingConfig, run, verify_log
from maker.cli.main import main


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def client(server: SimServer, **options) -> LiteLLMClient:
    settings = {"max_retries": 1, "backoff_s": 0.01, "timeout_s": 5.0, **options}
    return LiteLLMClient(LiteLLMConfig("openai/sim", api_base=server.url, **settings))


def steps_of(task, indices):
    """Premises on the true trajectory at the given indices, plus one off it."""
    step = task.first_step()
    out = []
    for i in range(max(indices) + 1):
        if i in indices:
            out.append(step)
        step = task.advance(step, task.truth(i))
    wrong = task.wrong_replies(out[-1])[0]
    out.append(task.step_after(out[-1].index, task.judge(out[-1], wrong).key))
    return out


def test_premise_is_read_back_from_every_prompt_style() -> None:
    task = get_task("hanoi", disks=6)
    for step in steps_of(task, {0, 1, 2, 17, 40}):
        chat = task.prompt(step, "chat")
        assert premise_from_prompt(chat[1]["content"]) == step.premise
        assert premise_from_prompt(chat[0]["content"] + "\n" + chat[1]["content"]) == step.premise
        assert premise_from_prompt(task.prompt(step, "completion")) == step.premise
    assert premise_from_prompt("Current state: [[1], [], []]") is None  # no previous move
    assert premise_from_prompt("Previous move: none\nCurrent state: [[1, 3], [], []]") is None  # disk 2 missing
    assert premise_from_prompt("hello") is None


def test_answers_chat_and_completion_from_the_prompt_with_usage() -> None:
    task = get_task("hanoi", disks=6)
    steps = steps_of(task, {0, 5, 33})
    with SimServer(SimServerConfig(p=1.0, latency=0.02)) as server:
        c = client(server)
        for style in ("chat", "completion"):
            requests = [SampleRequest(task.prompt(s, style), 0.0, 751, 7 + s.index, s) for s in steps]
            samples = asyncio.run(c.complete(requests))  # concurrently: they wait side by side
            assert len({s.response_id for s in samples}) == len(samples)
            for step, sample in zip(steps, samples):
                assert sample.error is None
                assert sample.text == task.reference_reply(step)  # the off-path premise too
                assert sample.tokens_in > 100 and sample.tokens_out > 5
        models = get(server.url + "/models")
        stats = server.stats()
    assert models["data"][0]["id"] == "sim"
    assert stats["answered"] == 2 * len(steps) and stats["wrong"] == 0 and stats["simulated"]
    assert stats["by_path"] == {"/v1/chat/completions": len(steps), "/v1/completions": len(steps)}
    assert stats["prompt_tokens"] > 0 and stats["completion_tokens"] > 0


def test_a_priced_model_name_is_costed_from_the_reported_usage() -> None:
    import litellm

    task = get_task("hanoi", disks=5)
    step = task.first_step()
    with SimServer(SimServerConfig(p=1.0, latency=0.0)) as server:
        priced = LiteLLMClient(LiteLLMConfig("openai/gpt-4.1-mini", api_base=server.url))
        (sample,) = asyncio.run(priced.complete([SampleRequest(task.prompt(step), 0.0, 751, 1, step)]))
    expected = sum(litellm.cost_per_token(model="gpt-4.1-mini", prompt_tokens=sample.tokens_in, completion_tokens=sample.tokens_out))
    assert expected > 0 and sample.cost_usd == pytest.approx(expected)


def test_accuracy_and_seeded_draws() -> None:
    task = get_task("hanoi", disks=5)
    step = task.first_step()
    right = task.reference_reply(step)
    with SimServer(SimServerConfig(p=0.5, latency=0.0)) as server:
        url = server.url + "/chat/completions"

        def ask(seed):
            body = {"model": "sim", "messages": task.prompt(step), "seed": seed}
            status, reply = post(url, body)
            assert status == 200
            return reply["choices"][0]["message"]["content"]

        texts = [ask(seed) for seed in range(300)]
        assert [ask(seed) for seed in range(20)] == texts[:20]  # a seed names one draw
        unseeded = [post(url, {"model": "sim", "messages": task.prompt(step)})[1] for _ in range(2)]
    wrong = sum(t != right for t in texts)
    assert 105 <= wrong <= 195  # p = 0.5: 150 expected, +-5 standard deviations
    assert all(task.judge(step, t).key is not None for t in texts)  # wrong, but well formed
    assert unseeded[0]["id"] != unseeded[1]["id"]


def test_refuses_what_it_cannot_answer() -> None:
    task = get_task("hanoi", disks=5)
    with SimServer(SimServerConfig(latency=0.0, disks=5)) as server:
        url = server.url + "/chat/completions"
        status, reply = post(url, {"model": "sim", "messages": [{"role": "user", "content": "hi"}]})
        assert status == 400 and "no hanoi step" in reply["error"]["message"]
        other = get_task("hanoi", disks=6)
        assert post(url, {"model": "sim", "messages": other.prompt(other.first_step())})[0] == 400
        assert post(url, {"model": "sim", "messages": task.prompt(task.first_step()), "stream": True})[0] == 400
        assert server.stats()["unreadable"] == 2


EXPECT = {
    "500": "InternalServerError",
    "429": "RateLimitError",
    "reset": "Error",
    "truncated": "Error",
    "hang": "Timeout",
}
#: the kind each injected fault is logged as (litellm reports resets and cut-off JSON as 500s)
LOGGED_AS = {"500": "server_error", "429": "rate_limited", "reset": "connection", "truncated": "bad_json", "hang": "timeout"}


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_fault_kind_reaches_the_client_as_data_and_is_counted(kind) -> None:
    task = get_task("hanoi", disks=5)
    step = task.first_step()
    config = SimServerConfig(latency=0.0, fault_rate=1.0, faults=(kind,), retry_after_s=0.0, hang_s=30.0)
    with SimServer(config) as server:
        started = time.perf_counter()
        # only the hang needs a short client timeout; the others get a roomy one, so that a loaded
        # machine cannot turn a slow reply into a timeout (the fault under test would then go unseen)
        timeout_s = 0.5 if kind == "hang" else 20.0
        (sample,) = asyncio.run(client(server, timeout_s=timeout_s).complete([SampleRequest(task.prompt(step), 0.0, 751, 1, step)]))
        elapsed = time.perf_counter() - started
        time.sleep(0.1)  # let the server notice a dropped connection
        stats = server.stats()
    if kind in EXPECT:
        assert sample.faults == (LOGGED_AS[kind],) * 2, sample.error  # retried once (max_retries=1), each logged by kind
        assert sample.error and EXPECT[kind] in sample.error and sample.text == ""
    assert stats["faults"][kind] == stats["requests"]
    if kind in EXPECT:
        assert stats["requests"] == 2  # then given up as data
    elif kind == "empty":
        assert sample.error is None and sample.text == ""
    else:  # huge: a 1 MB reply that a red flag must catch
        assert sample.error is None and len(sample.text) >= 1 << 20 and sample.tokens_out > 750
    if kind == "hang":
        assert elapsed < 5  # two 0.5 s timeouts, not the server's 30 s hang
        assert stats["disconnected"] == 2


def test_429_backs_off_for_retry_after() -> None:
    task = get_task("hanoi", disks=5)
    step = task.first_step()
    config = SimServerConfig(latency=0.0, fault_rate=1.0, faults=("429",), retry_after_s=0.4)
    with SimServer(config) as server:
        started = time.perf_counter()
        asyncio.run(client(server, max_retries=2, backoff_s=0.001).complete([SampleRequest(task.prompt(step), 0.0, 751, 1, step)]))
        elapsed = time.perf_counter() - started
        assert server.stats()["requests"] == 3
    assert elapsed >= 0.8  # two waits of Retry-After, not the 1 ms back-off


def test_rate_limits_pace_requests_and_tokens() -> None:
    task = get_task("hanoi", disks=5)
    step = task.first_step()
    requests = [SampleRequest(task.prompt(step), 0.0, 751, i, step) for i in range(40)]
    with SimServer(SimServerConfig(latency=0.0)) as server:
        timings = {}
        for name, options in {"free": {}, "rpm": {"rpm": 1200.0}, "tpm": {"tpm": 60 * 4000.0}}.items():
            started = time.perf_counter()
            samples = asyncio.run(client(server, **options).complete(requests))
            timings[name] = time.perf_counter() - started
            assert all(s.error is None for s in samples)
        prompt_tokens = sum(s.tokens_in for s in samples)  # taken before each call; replies settle after
    assert timings["rpm"] >= (40 - 20) / 20 * 0.9  # 20/s after a burst of 20
    assert prompt_tokens > 6000  # well past one burst
    assert timings["tpm"] >= (prompt_tokens - 4000) / 4000 * 0.9  # 4,000 tokens/s after a burst of 4,000


def test_token_bucket_takes_a_big_request_into_debt() -> None:
    async def go():
        bucket = TokenBucket(per_minute=600)  # 10/s, burst 10
        started = time.perf_counter()
        await bucket.acquire(25)  # bigger than the bucket: goes once it is full
        await bucket.acquire(1)  # waits out the debt: 16 units at 10/s
        return time.perf_counter() - started

    assert 1.4 <= asyncio.run(go()) < 3.0
    with pytest.raises(ValueError):
        TokenBucket(per_minute=0)


def test_port_in_use_is_one_line_exit_2(capsys) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        code = main(["sim-server", "--port", str(taken.getsockname()[1])])
    finally:
        taken.close()
    err = capsys.readouterr().err
    assert code == 2 and "already in use" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "args,needle",
    [(["--p", "1.5"], "--p"), (["--concurrency", "0"], "--concurrency"), (["--faults", "500,bogus"], "--faults"),
     (["--fault-rate", "2"], "--fault-rate"), (["--latency", "-1"], "--latency"), (["--task", "sudoku"], "invalid choice: 'sudoku' (choose from 'chase', 'hanoi')")],
)
def test_bad_server_input_is_one_line_exit_2(capsys, args, needle) -> None:
    code = main(["sim-server", "--port", "0", *args])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1


@pytest.mark.ray
def test_maker_run_through_litellm_survives_faults_and_hangs(ray_address, tmp_path) -> None:
    config = SimServerConfig(
        p=0.99, latency=0.01, jitter=0.01, fault_rate=0.15, faults=("500", "429", "reset", "truncated", "empty", "hang"),
        retry_after_s=0.0, hang_s=60.0,
    )
    task = get_task("hanoi", disks=4)
    with SimServer(config) as server:
        spec = ModelSpec("openai/sim", api_base=server.url, timeout_s=0.5)
        result = run(task, [spec], VotingConfig(k=2), log=tmp_path / "h5", seed=1)
        stats = server.stats()
    assert result.solved and result.errors == 0 and result.steps == 15
    assert result.simulated  # the server says what it is in /v1/models; the run is labelled
    assert not ModelSpec("openai/sim", api_base="http://127.0.0.1:9/v1").is_simulated  # nothing there: not labelled
    assert stats["faults_total"] > 0 and stats["answered"] >= result.samples
    assert result.extra["speculate"] == 8
    assert verify_log(tmp_path / "h5").valid


@pytest.mark.ray
def test_every_retried_fault_is_logged_by_kind(ray_address, tmp_path) -> None:
    """Without speculation no request is cancelled, so the log's fault counts must equal
    what the server injected, kind by kind."""
    from maker import ClusterConfig
    from maker.log.steplog import count_faults, open_log, read_table

    config = SimServerConfig(
        p=0.99, latency=0.0, fault_rate=0.2, faults=("500", "429", "reset", "truncated", "hang"),
        retry_after_s=0.0, hang_s=30.0, seed=3,
    )
    task = get_task("hanoi", disks=4)
    with SimServer(config) as server:
        # Only injected hangs may time out: 3 s is far above an answered request on a loaded
        # CI machine.  (This test caught a real bug: the worker's first price lookup imported
        # litellm while requests were in flight and timed one out; see test_openai_compatible.)
        spec = ModelSpec("openai/sim", api_base=server.url, timeout_s=3.0)
        result = run(task, [spec], VotingConfig(k=2), log=tmp_path / "f", seed=2, cluster=ClusterConfig(speculate=0))
        stats = server.stats()
    assert result.solved and result.errors == 0
    injected = {LOGGED_AS[kind]: n for kind, n in stats["faults"].items() if n}
    assert injected and result.faults_by_kind == injected
    logged = count_faults(read_table(open_log(tmp_path / "f"), ["faults"], kind="sample")["faults"].to_pylist(), {})
    assert logged == injected


@pytest.mark.ray
@pytest.mark.parametrize("down", ["refused", "hangs"])
def test_a_dead_endpoint_stops_the_run_after_a_few_failed_calls(ray_address, tmp_path, capsys, down) -> None:
    """Nothing listening, or a server that never answers: the run stops with one line
    after --max-failed-calls samples, each given up after its retries -- not after the
    50-sample discard streak of timeouts -- and what was drawn is in the log.  (2: the first
    round's calls; each waits out 4 retries and their back-offs, ~9 s.)"""
    from maker.log.steplog import open_log, read_table

    log = tmp_path / "dead"
    args = ["run", "hanoi", "--disks", "3", "--model", "openai/sim", "--k", "2", "--timeout", "0.3",
            "--max-failed-calls", "2", "--log", str(log), "--quiet"]
    if down == "refused":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
        code = main([*args, "--api-base", f"http://127.0.0.1:{port}/v1"])
        requests = None
    else:
        config = SimServerConfig(latency=0.0, fault_rate=1.0, faults=("hang",), hang_s=60.0)
        with SimServer(config) as server:
            code = main([*args, "--api-base", server.url])
            requests = server.stats()["requests"]
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert "calls in a row failed after their retries" in err and "--max-failed-calls 2" in err
    samples = read_table(open_log(log), ["red_flag", "faults"], kind="sample")
    assert 2 <= samples.num_rows <= 2 + 2  # stops at the first round that reaches 2 (k = 2 per round)
    assert set(samples["red_flag"].to_pylist()) == {"transport"}
    # a request that drew several samples (n) logs its faults once, on its first sample (the others: null)
    cells = samples["faults"].to_pylist()
    assert cells[0] is not None
    kinds = {kind for cell in cells if cell is not None for kind in cell.split(",")}
    if down == "refused":  # refused at once -- unless a loaded machine lets the 0.3 s timeout fire first
        assert "connection" in kinds and kinds <= {"connection", "timeout"}
    else:
        assert kinds == {"timeout"}
    if requests is not None:
        assert requests <= samples.num_rows * 5  # each sample: one call and at most 4 retries


def test_one_client_serves_event_loop_after_event_loop() -> None:
    """In-process callers (benchmarks, `maker estimate`) run each batch in a new event loop;
    the in-flight limit must follow, not stay bound to the first loop."""
    task = get_task("hanoi", disks=4)
    step = task.first_step()
    with SimServer(SimServerConfig(latency=0.01)) as server:
        one = client(server, concurrency=1)
        requests = [SampleRequest(task.prompt(step), 0.5, 751, i, step) for i in range(3)]
        for _ in range(2):  # the second loop's batch waits on the limit: that needs a semaphore of its own
            samples = asyncio.run(one.complete(requests))
            assert all(s.error is None and s.text for s in samples)


@pytest.mark.parametrize("variant", range(4))
def test_chase_prompts_are_answered_from_the_record_they_show(variant) -> None:
    """`--task chase`: the step is read back from the last record of any form, chat or
    completion; a right answer is the record's pointer, and a prompt of another list is 400."""
    task = get_task("chase", hops=5)
    step = task.first_step()
    with SimServer(SimServerConfig(p=1.0, latency=0.0, task="chase")) as server:
        prompt = task.prompt(step, "completion", variant)
        status, body = post(server.url + "/completions", {"model": "sim", "prompt": prompt, "max_tokens": 8})
        assert status == 200 and task.judge(step, body["choices"][0]["text"]).key == task.truth(0)
        chat = task.prompt(step, "chat", variant)
        status, body = post(server.url + "/chat/completions", {"model": "sim", "messages": chat, "max_tokens": 8})
        assert status == 200 and task.judge(step, body["choices"][0]["message"]["content"]).key == task.truth(0)
        other = get_task("chase", hops=5, list_seed=1)
        status, _ = post(server.url + "/completions", {"model": "sim", "prompt": other.prompt(other.first_step(), "completion"),
                                                        "max_tokens": 8})
        assert status == 400


@pytest.mark.ray
def test_maker_run_chase_through_the_server_is_solved(ray_address, tmp_path) -> None:
    with SimServer(SimServerConfig(p=0.99, latency=0.0, task="chase")) as server:
        spec = ModelSpec("openai/sim", api_base=server.url)
        result = run(get_task("chase", hops=30), [spec], VotingConfig(k=2), log=tmp_path / "c.parquet")
    assert result.solved and result.steps == 30 and result.simulated
