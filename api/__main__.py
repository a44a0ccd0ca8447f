"""`python -m api`: the API under uvicorn on ZDL_API_HOST:ZDL_API_PORT.

The address comes from the settings, so their check applies: without ZDL_API_KEYS only a loopback
address is accepted. (Started as `uvicorn api.main:app --host ...` instead, the API cannot see the
address; without keys it then answers only requests from this machine.)
"""

from __future__ import annotations

import uvicorn

from worker.settings import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run("api.main:app", host=settings.api_host, port=settings.api_port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
