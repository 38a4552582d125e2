-- Argo CD health check for modeldeploy.io/ModelDeployment.
--
-- The status follows kstatus (sigs.k8s.io/cli-utils/pkg/kstatus): status.observedGeneration,
-- Reconciling=True while the operator works towards the spec, Stalled=True when it cannot get
-- there without a person, Ready. This check reads them in kstatus' order, so Argo CD and Flux
-- agree; status.phase is the fallback for objects written by operators older than those
-- conditions. Uses only Lua's base library: Argo CD runs health checks without the others.
--
--   no status yet / generation not observed  Progressing
--   Stalled (awaiting an approval)           Suspended
--   Stalled (rolled back, failed, deadline)  Degraded
--   Reconciling (rollout, canary step, ...)  Progressing
--   Ready                                    Healthy
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to report status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the controller to observe generation " .. tostring(generation)
  return hs
end

local conditions = status.conditions
local stalled = condition(conditions, "Stalled")
local reconciling = condition(conditions, "Reconciling")
-- kstatus takes the first of the two that is True; the operator never sets both.
for _, c in ipairs(conditions or {}) do
  if c == stalled and c.status == "True" then
    if c.reason == "AwaitingApproval" then
      hs.status = "Suspended"
    else
      hs.status = "Degraded"
    end
    hs.message = c.message
    return hs
  end
  if c == reconciling and c.status == "True" then
    hs.status = "Progressing"
    hs.message = c.message
    return hs
  end
end

local ready = condition(conditions, "Ready")
local phase = status.phase
if stalled == nil and reconciling == nil and phase ~= nil and phase ~= "Healthy" then
  -- An operator from before the kstatus conditions: the phase says it.
  if phase == "AwaitingApproval" then
    hs.status = "Suspended"
  elseif phase == "Failed" or phase == "Degraded" or phase == "RolledBack" then
    hs.status = "Degraded"
  else
    hs.status = "Progressing"
  end
  local why = condition(conditions, "Degraded")
  if why == nil or why.status ~= "True" then
    why = ready
  end
  hs.message = phase
  if why ~= nil and why.message ~= nil and why.message ~= "" then
    hs.message = phase .. ": " .. why.message
  end
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = ready.message
else
  hs.message = "Waiting for the ModelDeployment to become ready"
end
return hs
