"""ingress-nginx's basic authentication (`auth-type: basic`, `auth-secret`,
`auth-secret-type`, `auth-realm`) against real clients and a real backend. Each test
names the ingress-nginx document or e2e test (kubernetes/ingress-nginx,
docs/user-guide/nginx-configuration/annotations.md "Authentication",
docs/examples/auth/basic, test/e2e/annotations/auth.go) it follows."""

import base64
import re

from harness import wait_until
from k8s import Config, path, rule

HOST = "auth.example.com"
OPEN = "open.example.com"
A = "nginx.ingress.kubernetes.io/"

# The password of every user below is "bar": hashes made by `openssl passwd -apr1`
# (the example's own line), glibc's crypt() and Python's hashlib.
HASHES = {
    "apr1": "$apr1$OFG3Xybp$ckL0FHDAkoXYIlH9.cysT0",
    "bcrypt-2y": "$2y$05$abcdefghijklmnopqrstuuUq7qXkDOZJ5Q8HA9wCOH0FErWp6q0b6",
    "bcrypt-2b": "$2b$05$abcdefghijklmnopqrstuuUq7qXkDOZJ5Q8HA9wCOH0FErWp6q0b6",
    "bcrypt-2a": "$2a$05$abcdefghijklmnopqrstuuUq7qXkDOZJ5Q8HA9wCOH0FErWp6q0b6",
    "sha": "{SHA}Ys23Ag/5IOWqZCw9QGaVDdHwH00=",
    "crypt-des": "ab9VHpu2/1Qrs",
    "md5-crypt": "$1$saltsalt$56ibbfTGLAsNdA0n6U1Nn/",
    "sha512-crypt": "$6$saltsalt$13ZWs86TCGWlKvPnoiZ5uGRk0I6FWQWsoBjy.0NUb9IUt/pnMWcsVBWPeXm2zbrm1/3NvnFsJFn2dIliX8SAJ/",
}


def secret(cfg, name, data):
    cfg.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {"name": name, "namespace": "default"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
    )


def config(echo, annotations, secrets=()):
    """The protected Ingress on HOST and an unprotected one on OPEN."""
    cfg = Config()
    cfg.backend("web", [echo.a])
    for name, data in secrets:
        secret(cfg, name, data)
    cfg.ingress("auth", rules=[rule(HOST, path("/", "web"))], annotations={A + k: v for k, v in annotations.items()})
    cfg.ingress("open", rules=[rule(OPEN, path("/", "web"))])
    return cfg


BASIC = {"auth-type": "basic", "auth-secret": "basic-auth", "auth-realm": "test auth"}


def htpasswd(users):
    return "".join("%s:%s\n" % u for u in users.items())


def as_user(p, user, password, host=HOST):
    return p.get("/", "-u", "%s:%s" % (user, password), host=host)


def test_each_hash_scheme_nginx_accepts_lets_its_user_in(portico, echo):
    """docs/examples/auth/basic: an htpasswd file in key `auth`; e2e "should return
    status code 200 when authentication is configured and Authorization header is sent"
    and "... 401 when ... sent with invalid credentials", for every hash scheme nginx's
    auth_basic checks; the endpoint never sees the credentials (the template's
    `proxy_set_header Authorization ""`)."""
    p = portico(config(echo, BASIC, [("basic-auth", {"auth": htpasswd(HASHES)})]))
    for user in HASHES:
        r = as_user(p, user, "bar")
        assert r.status == 200, (user, r)
        assert "authorization" not in {k.lower() for k in r.json()["headers"]}, user
        # Again: the verified password is remembered, the answer the same.
        assert as_user(p, user, "bar").status == 200, user
        wrong = as_user(p, user, "baz")
        assert wrong.status == 401, (user, wrong)
        assert wrong.header("www-authenticate") == 'Basic realm="test auth"'
    assert as_user(p, "nobody", "bar").status == 401


def test_no_credentials_get_401_with_the_realm(portico, echo):
    """e2e "should return status code 401 when authentication is configured but
    Authorization header is not configured": the challenge names auth-realm; without
    one, nginx's `auth_basic ""`; other Ingresses are not affected."""
    p = portico(config(echo, BASIC, [("basic-auth", {"auth": htpasswd(HASHES)})]))
    r = p.get("/", host=HOST)
    assert r.status == 401
    assert r.header("www-authenticate") == 'Basic realm="test auth"'
    assert p.get("/", host=OPEN).status == 200

    no_realm = {k: v for k, v in BASIC.items() if k != "auth-realm"}
    p2 = portico(config(echo, no_realm, [("basic-auth", {"auth": htpasswd(HASHES)})]))
    assert p2.get("/", host=HOST).header("www-authenticate") == 'Basic realm=""'


def test_auth_map_takes_each_key_as_a_user(portico, echo):
    """annotations.md "auth-secret-type": `auth-map`, each key of the Secret a user and
    its value the hash."""
    annotations = dict(BASIC, **{"auth-secret-type": "auth-map"})
    p = portico(config(echo, annotations, [("basic-auth", {"foo": HASHES["apr1"], "baz": HASHES["bcrypt-2y"]})]))
    assert as_user(p, "foo", "bar").status == 200
    assert as_user(p, "baz", "bar").status == 200
    assert as_user(p, "foo", "baz").status == 401


def test_missing_secret_fails_closed_and_says_why(portico, echo):
    """e2e "should return status code 503 when authentication is configured with an
    invalid secret": the Ingress's paths answer 503, never unauthenticated, the log
    names the reason, and the other Ingress keeps serving."""
    p = portico(config(echo, dict(BASIC, **{"auth-secret": "something"}), [("basic-auth", {"auth": htpasswd(HASHES)})]))
    assert p.get("/", host=HOST).status == 503
    assert as_user(p, "apr1", "bar").status == 503
    assert p.get("/", host=OPEN).status == 200
    line = wait_until(lambda: re.search(r".*SecretNotFound.*", p.log()), 10, what="the diagnostic").group(0)
    assert "something" in line, line


def test_bad_line_answers_500_for_its_user_only(portico, echo):
    """e2e "should return status code 500 when authentication is configured with invalid
    content and Authorization header is sent": `foo:` has no hash; the other users of
    the file still get in, and the log says which line is wrong."""
    p = portico(config(echo, BASIC, [("basic-auth", {"auth": "foo:\n" + htpasswd(HASHES)})]))
    assert as_user(p, "foo", "bar").status == 500
    assert as_user(p, "apr1", "bar").status == 200
    line = wait_until(lambda: re.search(r".*InvalidAuthSecret.*", p.log()), 10, what="the diagnostic").group(0)
    assert "line 1" in line, line


def test_secret_update_takes_effect_without_a_restart(portico, echo):
    """A changed Secret is a changed input: the next table checks the new file (as
    ingress-nginx rewrites the password file and reloads); a password changed away no
    longer gets in, even one verified and remembered before."""
    p = portico(config(echo, BASIC, [("basic-auth", {"auth": htpasswd({"foo": HASHES["apr1"]})})]))
    assert as_user(p, "foo", "bar").status == 200
    # foo's password becomes "baz" ({PLAIN}, nginx's plain-text scheme).
    p.replace_config(config(echo, BASIC, [("basic-auth", {"auth": "foo:{PLAIN}baz\n"})]).yaml())
    wait_until(lambda: as_user(p, "foo", "baz").status == 200, 10, what="the new password to be live")
    assert as_user(p, "foo", "bar").status == 401


# --- external authentication (auth-url) --------------------------------------------


def ext_config(echo, auth, **annotations):
    """HOST guarded by the auth service at `auth`; the X-Got-* headers it answers with
    are copied onto the proxied request, where the echo backend shows them."""
    got = "X-User, X-Got-Original-URL, X-Got-Original-Method, X-Got-Sent-From, X-Got-Auth-Request-Redirect"
    base = {"auth-response-headers": got}
    base.update({k.replace("_", "-"): v for k, v in annotations.items()})
    return config(echo, base)


def test_auth_url_lets_signed_in_users_through(portico, echo, backends):
    """e2e auth.go "when external authentication is configured" / "should return status
    code 200 when signed in": the auth service sees the original request's head (its
    Authorization, X-Original-URL, X-Original-Method, X-Sent-From,
    X-Auth-Request-Redirect, the template's auth location), and `auth-response-headers`
    reach the endpoint."""
    auth = backends.start("auth", "auth")
    p = portico(ext_config(echo, auth, auth_url="http://%s/basic-auth/user/password" % auth.addr))
    r = p.get("/app?x=1", "-u", "user:password", host=HOST)
    assert r.status == 200, r
    seen = r.json()["headers"]
    assert seen["x-user"] == "user"
    assert seen["x-got-original-url"] == "http://%s:%d/app?x=1" % (HOST, p.http_port)
    assert seen["x-got-original-method"] == "GET"
    assert seen["x-got-sent-from"] == "nginx-ingress-controller"
    assert seen["x-got-auth-request-redirect"] == "/app?x=1"
    # The auth service's 401 reaches the client, with its challenge.
    r = p.get("/app", "-u", "user:wrong", host=HOST)
    assert r.status == 401
    assert r.header("www-authenticate") == 'Basic realm="Fake Realm"'
    assert p.get("/", host=OPEN).status == 200


def test_auth_response_headers_cannot_be_forged_by_the_client(portico, echo, backends):
    """ingress-nginx sets each `auth-response-headers` field from the auth answer with
    proxy_set_header, which drops the client's own copy when the answer has none."""
    auth = backends.start("auth", "auth")
    p = portico(ext_config(echo, auth, auth_url="http://%s/status/200" % auth.addr))
    r = p.get("/", host=HOST, headers=["X-User: admin"])
    assert r.status == 200
    assert "x-user" not in r.json()["headers"]


def test_auth_signin_redirects_with_the_original_url(portico, echo, backends):
    """e2e auth.go "should redirect to signin url when not signed in": 302 to
    auth-signin with `rd=` the scheme, host and escaped request URI."""
    auth = backends.start("auth", "auth")
    p = portico(
        ext_config(
            echo,
            auth,
            auth_url="http://%s/basic-auth/user/password" % auth.addr,
            auth_signin="http://$host/auth/start",
        )
    )
    r = p.get("/?a=b&c=d", host=HOST)
    assert r.status == 302, r
    assert r.header("location") == "http://%s/auth/start?rd=http://%s:%d%%2F%%3Fa%%3Db%%26c%%3Dd" % (
        HOST,
        HOST,
        p.http_port,
    )


def test_auth_service_errors_are_500_and_403_is_403(portico, echo, backends):
    """annotations.md "External Authentication" (nginx's auth_request): 403 goes to the
    client, any other answer or none at all is 500; nothing reaches the endpoint."""
    auth = backends.start("auth", "auth")
    for path, want in [("/status/403", 403), ("/status/404", 500), ("/status/502", 500)]:
        p = portico(ext_config(echo, auth, auth_url="http://%s%s" % (auth.addr, path)))
        assert p.get("/", host=HOST).status == want, path
        p.stop()
    # A port nobody listens on.
    p = portico(ext_config(echo, auth, auth_url="http://127.0.0.1:9/auth"))
    assert p.get("/", host=HOST).status == 500


def test_auth_method_and_a_dns_name(portico, echo, backends):
    """annotations.md `auth-method`: the auth request goes with that method (and
    `X-Original-URI`); the auth URL's host may be a name the system resolver knows."""
    auth = backends.start("auth", "auth")
    url = "http://localhost:%d/method/POST" % auth.port
    p = portico(ext_config(echo, auth, auth_url=url, auth_method="POST"))
    assert p.get("/", host=HOST).status == 200
    p2 = portico(ext_config(echo, auth, auth_url=url))
    assert p2.get("/", host=HOST).status == 500


def test_unparsable_auth_url_fails_closed(portico, echo):
    """ingress-nginx's authreq parser denies the location for an invalid auth-url:
    503, and the log says why."""
    p = portico(ext_config(echo, None, auth_url="ftp://auth/x"))
    assert p.get("/", host=HOST).status == 503
    assert p.get("/", host=OPEN).status == 200
    line = wait_until(lambda: re.search(r".*auth-url.*InvalidAnnotation.*", p.log()), 10, what="the diagnostic")
    assert "ftp://auth/x" in line.group(0)
