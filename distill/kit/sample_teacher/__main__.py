"""`python -m distill.kit.sample_teacher --port 8000`: serve the sample-cover teacher on 127.0.0.1 (valid only on
the sample covers of `distill.kit.sample_data`; see distill/kit/sample_teacher/server.py)."""

from __future__ import annotations

import argparse

import uvicorn

from distill.kit.sample_teacher.reasoning import Teacher
from distill.kit.sample_teacher.server import create_app


class _Server(uvicorn.Server):
    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if not self.should_exit:  # listening now: say where, once
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            t = self.config.app.state.teacher
            print(
                f"sample teacher ready at http://{host}:{port}/v1 (model {self.config.app.state.model}, "
                f"error_rate {t.error_rate}, leak_rate {t.leak_rate}, seed {t.seed})",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m distill.kit.sample_teacher", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 picks a free port (the ready line names it)")
    ap.add_argument("--model", default="sample-teacher", help="the model name /v1/models lists")
    ap.add_argument("--error-rate", type=float, default=0.2, help="how often it misreads a colour")
    ap.add_argument("--leak-rate", type=float, default=0.1, help="how often a hinted rationale names the hint")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-level", default="warning")
    args = ap.parse_args(argv)
    for name in ("error_rate", "leak_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            ap.error(f"--{name.replace('_', '-')} must lie in [0, 1]")
    app = create_app(Teacher(args.error_rate, args.leak_rate, args.seed), args.model)
    _Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)).run()


if __name__ == "__main__":
    main()
