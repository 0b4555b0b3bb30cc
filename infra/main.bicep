metadata description = 'Migration and disaster-recovery control plane: Function App (Flex Consumption, Python 3.11, Durable Functions), storage, Cosmos DB, Event Grid, Key Vault, monitoring and least-privilege RBAC. Deploy: az deployment group create -g <rg> -f infra/main.bicep -p infra/main.parameters.json'

targetScope = 'resourceGroup'

@description('Short environment name (dev, prod, ...): letters, digits, hyphens; lowercased into every generated resource name and kept as the azd-env-name tag.')
@minLength(1)
@maxLength(16)
param environmentName string

@description('Azure region for all resources. Defaults to the resource group\'s region; it must offer Flex Consumption.')
param location string = resourceGroup().location

@description('Resource groups (same subscription) where migrated, test and temporary hydration VMs, disks and networks are created. The app identity gets VM, Network and Disk Snapshot Contributor on each of them and on nothing wider.')
param targetResourceGroupNames array

@description('Object IDs of appliance service principals, or of one Entra group containing them, allowed to publish events to the topic (EventGrid Data Sender on the topic only). Empty: add them later.')
param appliancePublisherPrincipalIds array = []

@description('Whether appliancePublisherPrincipalIds are service principals or groups.')
@allowed([
  'ServicePrincipal'
  'Group'
])
param appliancePublisherPrincipalType string = 'ServicePrincipal'

@description('Initial appliance credential pepper (48+ random bytes, base64). Empty: the Key Vault secret is left as it is (set or rotated out of band). Never put it in a parameters file; pass it on the command line from a generator.')
@secure()
param applianceCredentialPepper string = ''

@description('Create the Event Grid subscription to the on_appliance_event function. The function must already be published (ARM validates the destination), so the first deployment runs with false, then again with true after publishing the app.')
param deployEventSubscription bool = true

@description('Schema appliances publish events in; the subscription delivers in the same schema.')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param eventSchema string = 'EventGridSchema'

@description('Event Grid delivery attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param eventMaxDeliveryAttempts int = 30

@description('Minutes Event Grid keeps retrying an event before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

@description('Flex Consumption instance memory (MB).')
@allowed([
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Maximum scale-out instances of the Function App.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Always-ready instances for the durable trigger group; Durable Functions on Flex needs at least 1.')
@minValue(1)
@maxValue(20)
param durableAlwaysReadyInstances int = 1

@description('Spread Function App instances across availability zones; only where Flex Consumption supports zones.')
param zoneRedundant bool = false

@description('Redundancy of the replica storage account (replica disks and recovery points).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param replicaStorageSku string = 'Standard_ZRS'

@description('Days an unclaimed appliance upload stays in the cache account before lifecycle management deletes it (the app deletes applied cycles itself; this is a backstop).')
@minValue(1)
@maxValue(365)
param cacheUploadRetentionDays int = 14

@description('Days Log Analytics keeps data.')
@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@description('Cosmos DB database name (COSMOS_DATABASE).')
param cosmosDatabaseName string = 'migration'

@description('Extra app settings merged over the computed ones (non-secret values or Key Vault references only).')
param additionalAppSettings object = {}

@description('Tags applied to every resource, in addition to azd-env-name.')
param tags object = {}

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
@description('Email addresses that receive the operator alerts (RPO over threshold, health Critical, a failed job, an appliance silent, a Mobility agent silent). Empty: add receivers to the action group later.')
param alertEmails array = []

@description('Webhook URLs (HTTPS, common alert schema) that receive the operator alerts. A URL with a token is a secret: pass it on the command line.')
param alertWebhookUrls array = []

@description('RPO in seconds above which a machine alerts; keep it equal to the app setting HEALTH_RPO_WARNING_SECONDS.')
@minValue(60)
param alertRpoThresholdSeconds int = 7200

@description('Seconds without a heartbeat after which an appliance with replicating machines alerts; keep it equal to HEALTH_HEARTBEAT_TIMEOUT_SECONDS.')
@minValue(60)
param alertApplianceSilentSeconds int = 900

@description('Seconds without a heartbeat after which a replicating machine\'s Mobility agent alerts; keep it equal to HEALTH_AGENT_HEARTBEAT_TIMEOUT_SECONDS.')
@minValue(60)
param alertMobilityAgentSilentSeconds int = 900

@description('Application ID URI of the API\'s Entra app registration (e.g. api://migration-control-plane): the audience operators\' tokens must carry (OPERATOR_AUTH_AUDIENCE). The registration, with its app roles Migration.Reader, Migration.Operator and Migration.Administrator, is created outside this template (docs/security.md).')
param operatorAuthAudience string

@description('Tenant that issues operators\' tokens (OPERATOR_AUTH_AUTHORITY is its v2.0 authority). Defaults to the deployment\'s tenant.')
param operatorAuthTenantId string = tenant().tenantId

var allTags = union(tags, { 'azd-env-name': environmentName })
// Cosmos DB, Key Vault and storage names must be lowercase.
var env = toLower(environmentName)

// Containers, partition keys and default TTLs of the Cosmos repository (shared/platform/documents.py
// ALL_CONTAINERS). ONE list: tests/infra/test_cosmos_containers.py compares it with the code and with
// docs/data-model.md when that exists, so change them together. defaultTtl: absent = never expires,
// -1 = only documents with their own ttl expire, >0 = seconds.
var cosmosContainers = [
  { name: 'appliances', partitionKeyPath: '/id' }
  { name: 'machines', partitionKeyPath: '/id' }
  { name: 'jobs', partitionKeyPath: '/id' }
  { name: 'events', partitionKeyPath: '/machineId', defaultTtl: 7776000 }
  { name: 'commands', partitionKeyPath: '/applianceId', defaultTtl: -1 }
  { name: 'cycles', partitionKeyPath: '/machineId' }
  { name: 'mobility', partitionKeyPath: '/id' }
]

var cacheUploadContainer = 'uploads'
var replicaContainers = [
  'replicas' // fixed-VHD page blobs; recovery points are their blob snapshots
  'hydration' // preparation toolkit package and its JSON reports
  'mobility-installers' // Mobility service installers uploaded by the operator
  'refused-events' // appliance events the app refused, with the reason (shared/appliances/refusals.py)
]
var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'eventgrid-deadletter'
var pepperSecretName = 'appliance-credential-pepper'
var applianceEventTypes = [
  'Migrate.Appliance.Heartbeat'
  'Migrate.Replication.CycleUploaded'
  'Migrate.Replication.CycleFailed'
  'Migrate.Replication.CycleStarted' // lets the control plane time the uploads itself (1011)
]
var functionAppName = '${abbrs.functionApp}${env}-${resourceToken}'

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: '${abbrs.managedIdentity}${env}-${resourceToken}'
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: '${abbrs.logAnalytics}${env}-${resourceToken}'
    appInsightsName: '${abbrs.appInsights}${env}-${resourceToken}'
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
    workbookDisplayName: 'Migration control plane (${environmentName})'
  }
}

module hostStorage 'modules/storage.bicep' = {
  name: 'host-storage'
  params: {
    name: '${abbrs.storageAccount}host${resourceToken}'
    location: location
    tags: allTags
    containerNames: [
      deploymentContainerName
      deadLetterContainerName
    ]
  }
}

module cacheStorage 'modules/storage.bicep' = {
  name: 'cache-storage'
  params: {
    name: '${abbrs.storageAccount}cache${resourceToken}'
    location: location
    tags: allTags
    containerNames: [
      cacheUploadContainer
    ]
    expireBlobsAfterDays: cacheUploadRetentionDays
    expireBlobsPrefixes: [
      '${cacheUploadContainer}/'
    ]
  }
}

module replicaStorage 'modules/storage.bicep' = {
  name: 'replica-storage'
  params: {
    name: '${abbrs.storageAccount}replica${resourceToken}'
    location: location
    tags: allTags
    skuName: replicaStorageSku
    containerNames: replicaContainers
    // Longer than the cache: a deleted replica is a full resync of the machine.
    blobSoftDeleteDays: 14
    containerSoftDeleteDays: 14
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    name: '${abbrs.cosmosAccount}${env}-${resourceToken}'
    location: location
    tags: allTags
    databaseName: cosmosDatabaseName
    containers: cosmosContainers
    appPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'key-vault'
  params: {
    name: '${abbrs.keyVault}${resourceToken}'
    location: location
    tags: allTags
    pepperSecretName: pepperSecretName
    pepperValue: applianceCredentialPepper
    workspaceId: monitoring.outputs.workspaceId
  }
}

module topic 'modules/eventgrid-topic.bicep' = {
  name: 'eventgrid-topic'
  params: {
    name: '${abbrs.eventGridTopic}${env}-${resourceToken}'
    location: location
    tags: allTags
    inputSchema: eventSchema
    workspaceId: monitoring.outputs.workspaceId
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    appPrincipalId: identity.outputs.principalId
    hostStorageAccountName: hostStorage.outputs.name
    cacheStorageAccountName: cacheStorage.outputs.name
    replicaStorageAccountName: replicaStorage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    topicName: topic.outputs.name
    topicPrincipalId: topic.outputs.principalId
    deadLetterContainerName: deadLetterContainerName
    appliancePublisherPrincipalIds: appliancePublisherPrincipalIds
    appliancePublisherPrincipalType: appliancePublisherPrincipalType
  }
}

module targetRbac 'modules/target-rg-rbac.bicep' = [
  for rgName in targetResourceGroupNames: {
    // Deployment names are capped at 64 characters; resource group names may be 90.
    name: 'target-rbac-${uniqueString(rgName)}'
    scope: resourceGroup(rgName)
    params: {
      appPrincipalId: identity.outputs.principalId
    }
  }
]

// Every setting shared/platform/settings.py reads in Azure, identity-based or a Key Vault reference. Keys and
// connection strings (COSMOS_KEY, EVENTGRID_TOPIC_KEY, *_CONNECTION_STRING) are local-only and must never
// appear here; tests/infra/test_wiring.py enforces both directions.
var appSettings = union({
    AZURE_CLIENT_ID: identity.outputs.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
    // Entra-authenticated ingestion for the Functions host (App Insights has local auth disabled).
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
    COSMOS_ENDPOINT: cosmos.outputs.endpoint
    COSMOS_DATABASE: cosmosDatabaseName
    COSMOS_VERIFY_TLS: 'true'
    CACHE_STORAGE_ACCOUNT_URL: cacheStorage.outputs.blobEndpoint
    REPLICA_STORAGE_ACCOUNT_URL: replicaStorage.outputs.blobEndpoint
    // Managed disks are imported from recovery-point copies in this account (creationData.storageAccountId).
    REPLICA_STORAGE_ACCOUNT_ID: replicaStorage.outputs.id
    EVENTGRID_TOPIC_ENDPOINT: topic.outputs.endpoint
    APPLIANCE_CREDENTIAL_PEPPER: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.pepperSecretUri})'
    AZURE_SUBSCRIPTION_ID: subscription().subscriptionId
    // The cloud's own Resource Manager (sovereign clouds differ); the SDK default otherwise.
    ARM_ENDPOINT: environment().resourceManager
    ARM_POLLING_INTERVAL_SECONDS: '30'
    COPY_PROGRESS_INTERVAL_SECONDS: '5'
    TARGET_RESOURCE_GROUPS: join(targetResourceGroupNames, ',')
    // Operators' Entra ID tokens, validated by the app against this tenant's published keys.
    OPERATOR_AUTH_AUTHORITY: '${environment().authentication.loginEndpoint}${operatorAuthTenantId}/v2.0'
    OPERATOR_AUTH_AUDIENCE: operatorAuthAudience
}, additionalAppSettings)

module functionApp 'modules/functionapp.bicep' = {
  name: 'function-app'
  params: {
    name: functionAppName
    planName: '${abbrs.appServicePlan}${env}-${resourceToken}'
    location: location
    tags: allTags
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    hostStorageAccountName: hostStorage.outputs.name
    hostStorageBlobEndpoint: hostStorage.outputs.blobEndpoint
    deploymentContainerName: deploymentContainerName
    pythonVersion: '3.11'
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    durableAlwaysReadyInstances: durableAlwaysReadyInstances
    zoneRedundant: zoneRedundant
    appSettings: appSettings
    workspaceId: monitoring.outputs.workspaceId
  }
  // The host starts as soon as the site exists: its storage, vault and telemetry roles must be in place,
  // or the first start fails on AzureWebJobsStorage and the Key Vault reference stays unresolved.
  dependsOn: [
    rbac
  ]
}

module eventSubscription 'modules/eventgrid-subscription.bicep' = if (deployEventSubscription) {
  name: 'eventgrid-subscription'
  params: {
    topicName: topic.outputs.name
    name: 'appliance-events-to-functions'
    functionAppId: functionApp.outputs.id
    functionName: 'on_appliance_event'
    includedEventTypes: applianceEventTypes
    deliverySchema: eventSchema
    maxDeliveryAttempts: eventMaxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    maxEventsPerBatch: 1
    deadLetterStorageAccountId: hostStorage.outputs.id
    deadLetterContainerName: deadLetterContainerName
  }
  // Dead-lettering is validated against the topic identity's access at creation.
  dependsOn: [
    rbac
  ]
}

module availabilityTest 'modules/availability-test.bicep' = {
  name: 'availability-test'
  params: {
    name: 'health-${functionAppName}'
    location: location
    tags: allTags
    appInsightsId: monitoring.outputs.appInsightsId
    url: '${functionApp.outputs.url}/api/health'
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    actionGroupName: '${abbrs.actionGroup}${env}-${resourceToken}'
    actionGroupShortName: take('migrate${env}', 12)
    namePrefix: '${abbrs.scheduledQueryRule}${env}-${resourceToken}'
    location: location
    tags: allTags
    appInsightsId: monitoring.outputs.appInsightsId
    alertEmails: alertEmails
    alertWebhookUrls: alertWebhookUrls
    rpoThresholdSeconds: alertRpoThresholdSeconds
    applianceSilentSeconds: alertApplianceSilentSeconds
    mobilityAgentSilentSeconds: alertMobilityAgentSilentSeconds
  }
}

@description('Base URL of the control plane HTTP API (append /api/...).')
output functionAppUrl string = functionApp.outputs.url

@description('Name of the Function App (for az functionapp / func azure functionapp publish).')
output functionAppName string = functionApp.outputs.name

@description('Event Grid topic endpoint appliances publish to (Entra token, audience https://eventgrid.azure.net).')
output eventGridTopicEndpoint string = topic.outputs.endpoint

@description('Everything an appliance is configured with. It authenticates to the topic with its own Entra service principal (listed in appliancePublisherPrincipalIds) and to the API with the credential returned by POST /api/appliances; it uploads with the per-blob, write-only user-delegation SAS URLs of POST /api/appliances/{applianceId}/upload-credentials, never with account keys.')
output applianceConfiguration object = {
  tenantId: tenant().tenantId
  apiBaseUrl: '${functionApp.outputs.url}/api'
  eventGridTopicEndpoint: topic.outputs.endpoint
  eventGridTokenAudience: 'https://eventgrid.azure.net'
  eventSchema: eventSchema
  cacheStorageBlobEndpoint: cacheStorage.outputs.blobEndpoint
  cacheUploadContainer: cacheUploadContainer
}

@description('Key Vault holding the appliance credential pepper (secret appliance-credential-pepper).')
output keyVaultName string = keyVault.outputs.name

@description('Client ID of the app identity (AZURE_CLIENT_ID).')
output appIdentityClientId string = identity.outputs.clientId

@description('Application Insights component to query (see docs/deploy.md for KQL).')
output appInsightsName string = monitoring.outputs.appInsightsName

@description('Resource ID of the operations workbook.')
output workbookId string = monitoring.outputs.workbookId
