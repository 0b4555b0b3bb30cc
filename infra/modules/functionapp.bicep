metadata description = 'Flex Consumption plan and the Python 3.11 Function App (Durable Functions on the Azure Storage provider), running as a user-assigned identity with identity-based connections and Key Vault references only.'

@description('Function App name (becomes <name>.azurewebsites.net).')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to the plan and the app (the app also gets azd-service-name).')
param tags object

@description('Resource ID of the user-assigned identity the app runs as.')
param identityId string

@description('Client ID of that identity.')
param identityClientId string

@description('Name of the host storage account (AzureWebJobsStorage: Durable task hub, timers, deployment package).')
param hostStorageAccountName string

@description('Blob endpoint of the host storage account.')
param hostStorageBlobEndpoint string

@description('Container in the host storage account holding the deployment package.')
param deploymentContainerName string

@description('Python version of the worker.')
@allowed([
  '3.11'
])
param pythonVersion string

@description('Memory per instance in MB.')
@allowed([
  2048
  4096
])
param instanceMemoryMB int

@description('Upper bound on scale-out instances.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('Always-ready instances of the durable group (orchestrators, activities, entities). Durable Functions on Flex needs at least 1 so the task hub is polled while idle.')
@minValue(1)
@maxValue(20)
param durableAlwaysReadyInstances int

@description('Spread the plan\'s instances across availability zones (only in regions where Flex Consumption supports zones).')
param zoneRedundant bool

@description('App settings computed by main.bicep: identity-based connection settings, endpoints, Key Vault references. Never keys.')
param appSettings object

@description('Log Analytics workspace receiving the app\'s FunctionAppLogs.')
param workspaceId string

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // checkov:skip=CKV_AZURE_225: zone redundancy is a parameter (zoneRedundant) because Flex Consumption offers it only in some regions; production deployments in such regions set it to true.
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

// Host storage through the identity: Durable's Azure Storage provider reads the same AzureWebJobsStorage
// connection (host.json connectionName). Flex rejects FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION
// (the runtime is in functionAppConfig), so they are deliberately absent.
var hostStorageSettings = {
  AzureWebJobsStorage__accountName: hostStorageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
}
var allSettings = union(appSettings, hostStorageSettings)

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    // checkov:skip=CKV_AZURE_222: the API serves on-premises appliances and operators over the internet; every route is authenticated (function keys / Entra ID, docs/security.md). Private endpoints would need the appliances on a private network.
    // checkov:skip=CKV_AZURE_212: Flex Consumption scales instances on demand (maximumInstanceCount) and keeps durableAlwaysReadyInstances warm; there is no fixed instance count to raise.
    // checkov:skip=CKV_AZURE_213: the platform health-check eviction is not relied on for Flex Consumption instances; liveness is GET /api/health (functions/health.py), probed by an availability test (docs/deploy.md).
    // checkov:skip=CKV_AZURE_17: callers authenticate with function keys / Entra ID (Easy Auth, docs/security.md) and Event Grid delivers through its AzureFunction destination; client certificates are not part of the design.
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    // Without this the platform resolves @Microsoft.KeyVault(...) references with a system identity the app
    // does not have.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      httpLoggingEnabled: true
      detailedErrorLoggingEnabled: true
      requestTracingEnabled: true
      // Set with the site (not a separate config/appsettings resource) so the first start already has them.
      appSettings: [for setting in items(allSettings): {
        name: setting.key
        value: setting.value
      }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        alwaysReady: [
          {
            name: 'durable'
            instanceCount: durableAlwaysReadyInstances
          }
        ]
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: app
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
  }
}

@description('Resource ID of the Function App (the Event Grid subscription targets <id>/functions/<name>).')
output id string = app.id

@description('Name of the Function App.')
output name string = app.name

@description('Base URL of the Function App; the HTTP API is under /api.')
output url string = 'https://${app.properties.defaultHostName}'
