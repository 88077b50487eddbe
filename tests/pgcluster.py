"""A throwaway PostgreSQL cluster for the farm-mode tests (scripts/pg-throwaway:
initdb into a temp folder as a non-root user, a free 127.0.0.1 port, stopped
at the end). One cluster per pytest session; one fresh database per test.

No PostgreSQL server binaries is a FAILURE (CI installs them through
scripts/setup-test), unless CC_TEST_NO_PG=1 is set, which skips."""
import itertools
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "pg-throwaway")


def _env():
    """The environment without a sanitizer preload: scripts/test's sanitizer passes preload ASan
    or TSan into every child, and neither bash (the helper; under TSan it crashes before its own
    `unset LD_PRELOAD`) nor PostgreSQL's programs (psql hangs under ASan) are built for it."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


class Cluster:
    def __init__(self, durable=False):
        self.tmp = tempfile.mkdtemp(prefix="cc-pytest-pg-")
        self.dir = os.path.join(self.tmp, "c")
        args = [SCRIPT, "start", self.dir] + ([] if durable else ["--no-fsync"])
        out = subprocess.run(args, capture_output=True, text=True, timeout=120, env=_env())
        if out.returncode != 0:
            raise RuntimeError(f"scripts/pg-throwaway start failed: {out.stderr.strip()}")
        self.port = int(out.stdout.split()[-1])
        self._seq = itertools.count()

    def uri(self, db="postgres", user="postgres", password=None):
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{db}"

    def psql(self, sql, db="postgres"):
        out = subprocess.run(["psql", "-qAtX", "-v", "ON_ERROR_STOP=1", self.uri(db), "-c", sql],
                             capture_output=True, text=True, timeout=60, env=_env())
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return out.stdout.strip()

    def new_db(self):
        name = f"t{os.getpid()}_{next(self._seq)}"
        self.psql(f"CREATE DATABASE {name}")
        return self.uri(name)

    def stop_server(self):
        subprocess.run([SCRIPT, "pgctl", self.dir, "-m", "fast", "-w", "stop"], check=True, capture_output=True,
                       timeout=60, env=_env())

    def start_server(self):
        subprocess.run([SCRIPT, "pgctl", self.dir, "-w", "-t", "60", "-o",
                        f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''", "start"],
                       check=True, capture_output=True, timeout=90, env=_env())

    def close(self):
        subprocess.run([SCRIPT, "stop", self.dir], capture_output=True, timeout=60, env=_env())
        subprocess.run(["rm", "-rf", self.tmp], env=_env())
