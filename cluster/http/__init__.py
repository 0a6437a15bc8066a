"""Model clients that speak HTTP: any OpenAI-compatible endpoint over aiohttp
(`openai_compatible`, the embedded local server's too), hosted providers through litellm
(`litellm_client`), and what they share (`transport`: batching, `n`, retries, Retry-After,
faults by kind; `ratelimit`: requests and tokens per minute, requests in flight)."""
