-- Argo CD health of a tasked.dev Flow, from status.phase (docs/install.md, "Argo CD").
-- Healthy when every task finished and none failed; Degraded when the Flow failed (a task
-- failed or was cancelled, or the DAG is invalid: the reason says which); Progressing until
-- the controller has seen it and while tasks run.
local hs = {}
local st = obj.status
local phase = st ~= nil and st.phase or nil
-- "REASON: MESSAGE", without a reason that only repeats the phase.
local function why(default)
  local parts = {}
  if st ~= nil and st.reason ~= nil and st.reason ~= "" and st.reason ~= phase then
    table.insert(parts, st.reason)
  end
  if st ~= nil and st.message ~= nil and st.message ~= "" then table.insert(parts, st.message) end
  if #parts == 0 then return default end
  return table.concat(parts, ": ")
end
if phase == nil or phase == "" then
  hs.status = "Progressing"
  hs.message = "waiting for the controller"
elseif phase == "Pending" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = phase .. ": " .. why(phase)
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = why("Succeeded")
elseif phase == "Failed" or phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. why(phase)
else
  hs.status = "Unknown"
  hs.message = "unknown phase " .. tostring(phase)
end
return hs
