-- The example recipes build and run as the README says.
local support = require "support"

-- #network: it runs debootstrap and apt-get against the Debian mirror.
describe("recipes/python-app.lua #root #slow #network", function()
  it("builds a Debian base with python3 and serves the app", function()
    local root = support.store_root()
    finally(root.teardown)
    local st, out, err = root.luactr("build recipes/python-app.lua")
    assert.are.equal(0, st, out .. err)
    assert.matches("%[base%] FROM debian bookworm", err)
    assert.matches("python%-app %x+ in", err)
    -- the server and a client in one container: its own loopback only
    st, out, err = root.luactr("run --rm --entrypoint sh python-app -c " .. support.q(
      "python3 /app/server.py & for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.3; "
      .. "python3 -c 'import urllib.request as u; print(u.urlopen(\"http://127.0.0.1:8000/\").read().decode(), end=\"\")' "
      .. "2>/dev/null && break; done; id -u"))
    assert.are.equal(0, st, err)
    assert.are.equal("hello from python\n1000\n", out)
    -- a rebuild comes from the cache, base included
    st, out, err = root.luactr("build recipes/python-app.lua")
    assert.are.equal(0, st, err)
    assert.matches("FROM debian bookworm CACHED", err)
    assert.matches("RUN apt%-get[^\n]* CACHED", err)
  end)
end)
