metadata description = 'Role assignments for the app identity in ONE migration target resource group (deploy with scope: resourceGroup(name)). Nothing is granted at subscription scope.'

@description('Principal ID of the app identity.')
param appPrincipalId string

// Built-in role definition IDs (Azure RBAC).
var virtualMachineContributor = '9980e02c-c2be-4d73-94e8-173b1dc7cf3c' // Virtual Machine Contributor: VMs, extensions (Custom Script), managed disks read/write/delete
var networkContributor = '4d97b98b-1d4f-4787-a291-c67834d212e7' // Network Contributor: temporary VNet/subnet/NSG/NIC for hydration, NICs of migrated VMs
var diskSnapshotContributor = '7efff54f-a5b4-42b5-a1c5-5411624893ce' // Disk Snapshot Contributor: managed snapshots (VM Contributor has none), so Import is not throttled by one blob snapshot a minute

var roles = [
  virtualMachineContributor
  networkContributor
  diskSnapshotContributor
]

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in roles: {
    name: guid(resourceGroup().id, appPrincipalId, role)
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

@description('Resource group these roles were granted in.')
output resourceGroupName string = resourceGroup().name
