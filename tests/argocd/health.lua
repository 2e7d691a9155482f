-- Runs an Argo CD health script the way Argo CD does (Lua 5.1, the object as the global `obj`,
-- JSON null as nil) on one object: lua5.1 tests/argocd/health.lua SCRIPT < object.json
-- Prints "STATUS<TAB>MESSAGE".
local cjson = require("cjson")
local function denull(v)
  if v == cjson.null then return nil end
  if type(v) == "table" then
    for k, x in pairs(v) do v[k] = denull(x) end
  end
  return v
end
obj = denull(cjson.decode(io.read("*a")))
local chunk = assert(loadfile(arg[1]))
local hs = chunk()
assert(type(hs) == "table", "the script must return a table")
local valid = { Healthy = true, Progressing = true, Degraded = true, Suspended = true, Missing = true, Unknown = true }
assert(valid[hs.status], "invalid health status " .. tostring(hs.status))
io.write(hs.status, "\t", hs.message or "", "\n")
