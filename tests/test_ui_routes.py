"""Routes the browser UI reads to decide what to show (web/comfy_credits.js)."""
import pytest

from appserver import Server


@pytest.mark.parametrize("allow", [False, True])
def test_signup_allowed_follows_the_operator(tmp_path, allow):
    s = Server(tmp_path, {"allow_signup": allow})
    try:
        st, body, _ = s.call("GET", "/credits/signup", auth=False)
        assert st == 200 and body == {"allowed": allow}
        # And the form's target agrees with what the UI was told.
        st, body, _ = s.call("POST", "/credits/signup", {"email": "new@example.com", "password": "long enough"},
                             auth=False)
        assert (st == 200) is allow, body
        if not allow:
            assert body["error"]["type"] == "signup_disabled"
    finally:
        s.close()
