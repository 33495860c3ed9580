import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402

FRONTS = ["nginx", "apache-proxy-fcgi", "apache-fcgid"]


@pytest.fixture(scope="module", params=FRONTS)
def site(request):
    s = harness.Site(request.param).start()
    yield s
    s.stop()
    if os.environ.get("SCEP_KEEP_TEST_DIRS") != "1":
        import shutil
        shutil.rmtree(s.root, ignore_errors=True)


@pytest.fixture(scope="module")
def nginx_site():
    s = harness.Site("nginx").start()
    yield s
    s.stop()
