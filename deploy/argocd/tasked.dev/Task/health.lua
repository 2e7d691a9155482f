-- Argo CD health of a tasked.dev Task, from status.phase (docs/install.md, "Argo CD").
-- A Task is one run: it is Healthy once it did what it was created for (Succeeded, or Skipped
-- because its `when` was false), Degraded when it ended without doing it (Failed, Cancelled),
-- and Progressing until then.
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
if phase == nil or phase == "" or phase == "Pending" then
  hs.status = "Progressing"
  hs.message = why("Pending: waiting for the controller or for dependencies")
elseif phase == "Queued" or phase == "Running" then
  hs.status = "Progressing"
  hs.message = phase .. ": " .. why(phase)
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = why("Succeeded")
elseif phase == "Skipped" then
  hs.status = "Healthy"
  hs.message = "Skipped: " .. why("condition false")
elseif phase == "Failed" or phase == "Cancelled" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. why(phase)
else
  hs.status = "Unknown"
  hs.message = "unknown phase " .. tostring(phase)
end
return hs
