-- Argo CD health check for the five ce.tenancy.io kinds (Organization, Account, CEUser,
-- RoleBinding, ElementSafelist): the same reading as kstatus (Flux, Helm --wait).
-- Install it under resource.customizations.health.ce.tenancy.io_<Kind> in argocd-cm (see
-- the README, "GitOps tools").
local hs = {}
local function condition(type_)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == type_ then
        return c
      end
    end
  end
  return nil
end

-- Not judged yet: the CRDs default status.observedGeneration to 0, which no generation is.
if obj.status == nil or obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "the operator has not reconciled generation " .. tostring(obj.metadata.generation) .. " yet"
  return hs
end
local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.reason .. ": " .. stalled.message
  return hs
end
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = reconciling.reason .. ": " .. reconciling.message
  return hs
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end
hs.status = "Progressing"
hs.message = "waiting for Ready"
return hs
