metadata description = 'Azure RBAC role assignments inside the control plane resource group, each on the narrowest resource that works.'

@description('Principal ID of the app identity.')
param appPrincipalId string

@description('Name of the host storage account (AzureWebJobsStorage, Durable task hub).')
param hostStorageAccountName string

@description('Name of the cache storage account (appliance uploads).')
param cacheStorageAccountName string

@description('Name of the replica storage account (replica disks, recovery points).')
param replicaStorageAccountName string

@description('Name of the Key Vault holding the pepper.')
param keyVaultName string

@description('Name of the Application Insights component (Entra-authenticated ingestion).')
param appInsightsName string

@description('Name of the Event Grid topic.')
param topicName string

@description('Principal ID of the topic\'s system identity (dead-lettering).')
param topicPrincipalId string

@description('Dead-letter container in the host storage account.')
param deadLetterContainerName string

@description('Object IDs of appliance service principals (or an Entra group of them) allowed to publish to the topic.')
param appliancePublisherPrincipalIds array

@description('Principal type of appliancePublisherPrincipalIds entries.')
@allowed([
  'ServicePrincipal'
  'Group'
])
param appliancePublisherPrincipalType string

// Built-in role definition IDs (Azure RBAC).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
var storageBlobDelegator = 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a' // Storage Blob Delegator
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender

resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostStorageAccountName
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  name: '${hostStorageAccountName}/default/${deadLetterContainerName}'
}

resource cacheStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: cacheStorageAccountName
}

resource replicaStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: replicaStorageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource topic 'Microsoft.EventGrid/topics@2025-02-15' existing = {
  name: topicName
}

// Host storage: the Functions host and Durable's Azure Storage provider need blob (leases, Owner for the
// deployment package and blob leases), queue (control/work-item queues) and table (history, instances).
resource hostBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, storageBlobDataOwner)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource hostQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, storageQueueDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource hostTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(hostStorage.id, appPrincipalId, storageTableDataContributor)
  scope: hostStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Cache: read uploads and delete applied ones.
resource cacheBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cacheStorage.id, appPrincipalId, storageBlobDataContributor)
  scope: cacheStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Cache: get the user delegation key that signs the appliances' write-only upload SAS
// (POST /api/appliances/{id}/upload-credentials). Granted on its own, so narrowing the data role above
// never silently stops uploads; a delegation SAS carries at most what the data role allows.
resource cacheBlobDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(cacheStorage.id, appPrincipalId, storageBlobDelegator)
  scope: cacheStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDelegator)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Replica: write pages, snapshot recovery points, copy snapshots for hydration.
resource replicaBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(replicaStorage.id, appPrincipalId, storageBlobDataContributor)
  scope: replicaStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource vaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Application Insights has local auth disabled: ingestion needs this role.
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The app publishes to the topic (Settings reads EVENTGRID_TOPIC_ENDPOINT and, locally only, a key).
resource appTopicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, appPrincipalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The topic's own identity writes dead letters, and only into the dead-letter container.
resource topicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, topicPrincipalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: topicPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appliancePublishers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for principalId in appliancePublisherPrincipalIds: {
    name: guid(topic.id, principalId, eventGridDataSender)
    scope: topic
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
      principalId: principalId
      principalType: appliancePublisherPrincipalType
    }
  }
]
