-- Argo CD health of a tasked.dev RunnerPool (docs/install.md, "Argo CD"). A pool is
-- configuration with runners behind it: Progressing until the controller has seen this
-- generation and while it scales up or its runners start (Reconciling), Degraded when it cannot
-- run as specified (Stalled: an invalid spec, a Deployment it does not own, pools not
-- configured), Healthy when at least minRunners runners are connected (Ready). A pool scaled to
-- zero is Healthy: it starts runners when tasks come.
local hs = {}
local st = obj.status
local gen = obj.metadata ~= nil and obj.metadata.generation or nil
if st == nil or st.observedGeneration == nil or (gen ~= nil and st.observedGeneration < gen) then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe this generation"
  return hs
end
local cond = {}
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type ~= nil then cond[c.type] = c end
  end
end
local function why(c) return (c.reason or c.type) .. ": " .. (c.message or "") end
local counts = string.format("%d ready, %d desired, %d queued, %d running", st.readyRunners or 0,
  st.desiredRunners or 0, st.queued or 0, st.running or 0)
if cond.Stalled ~= nil and cond.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = why(cond.Stalled)
elseif cond.Reconciling ~= nil and cond.Reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = why(cond.Reconciling) .. " (" .. counts .. ")"
elseif cond.Ready ~= nil and cond.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = counts
else
  hs.status = "Progressing"
  hs.message = (cond.Ready ~= nil and why(cond.Ready) or "no Ready condition yet") .. " (" .. counts .. ")"
end
return hs
