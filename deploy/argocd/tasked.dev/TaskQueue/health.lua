-- Argo CD health of a tasked.dev TaskQueue (docs/install.md, "Argo CD"). A queue is
-- configuration: Healthy once the controller has seen this generation, unless its
-- configuration lets no task run (Stalled: Degraded), or tasks are waiting in it while no
-- connected runner matches its runnerSelector (Degraded: they will not run). A queue without
-- waiting tasks stays Healthy, with the condition's message, so a queue for a pool that is
-- scaled to zero does not hold a sync.
local hs = {}
local st = obj.status
local gen = obj.metadata ~= nil and obj.metadata.generation or nil
if st == nil or st.observedGeneration == nil or (gen ~= nil and st.observedGeneration < gen) then
  hs.status = "Progressing"
  hs.message = "waiting for the controller to observe this generation"
  return hs
end
local runners = nil
local stalled = nil
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type == "RunnersAvailable" then runners = c end
    if c.type == "Stalled" and c.status == "True" then stalled = c end
  end
end
if stalled ~= nil then
  hs.status = "Degraded"
  hs.message = (stalled.reason or "Stalled") .. ": " .. (stalled.message or "")
  return hs
end
local waiting = (st.pending or 0) + (st.queued or 0)
local counts = string.format("%d pending, %d queued, %d running", st.pending or 0, st.queued or 0, st.running or 0)
if runners ~= nil and runners.status == "False" then
  local msg = (runners.reason or "NoMatchingRunner") .. ": " .. (runners.message or "") .. " (" .. counts .. ")"
  if waiting > 0 then
    hs.status = "Degraded"
  else
    hs.status = "Healthy"
  end
  hs.message = msg
  return hs
end
hs.status = "Healthy"
hs.message = counts
return hs
