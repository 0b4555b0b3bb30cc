metadata description = 'Cosmos DB for NoSQL, serverless, Entra-only (local auth off), with the control plane database and containers and the data-plane role assignment for the app identity.'

@description('Cosmos DB account name (3-44 lowercase letters, digits, hyphens).')
@minLength(3)
@maxLength(44)
param name string

@description('Azure region. Serverless accounts are single-region.')
param location string

@description('Tags applied to the account.')
param tags object

@description('Database the app uses (COSMOS_DATABASE).')
param databaseName string

@description('Containers: [{ name, partitionKeyPath, defaultTtl? }]. defaultTtl -1 means items never expire unless they set ttl themselves; absent means TTL off.')
param containers array

@description('Principal ID of the app identity, granted Cosmos DB Built-in Data Contributor on the database only.')
param appPrincipalId string

@description('Log Analytics workspace receiving the account\'s audit logs.')
param workspaceId string

// Cosmos DB Built-in Data Contributor (data plane: readMetadata, containers/*, items/*). Cosmos-native role,
// assigned through sqlRoleAssignments, not Microsoft.Authorization.
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-11-15' = {
  name: name
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    // checkov:skip=CKV_AZURE_99: the Function App (Flex, no VNet integration) has no fixed egress IPs; access is Entra-only (disableLocalAuth). Private endpoint is the documented hardening path.
    // checkov:skip=CKV_AZURE_101: same reason as CKV_AZURE_99: public endpoint, identity-only.
    databaseAccountOfferType: 'Standard'
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      // Session gives read-your-writes for the one writer per machine, at the lowest RU cost.
      defaultConsistencyLevel: 'Session'
    }
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
    enableAutomaticFailover: false
    enableFreeTier: false
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-11-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource sqlContainers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-11-15' = [
  for container in containers: {
    parent: database
    name: container.name
    properties: {
      resource: union({
        id: container.name
        partitionKey: {
          paths: [
            container.partitionKeyPath
          ]
          kind: 'Hash'
          version: 2
        }
      }, contains(container, 'defaultTtl') ? { defaultTtl: container.defaultTtl } : {})
    }
  }
]

// Scoped to the database, not the account: the identity cannot touch other databases on the account.
resource appDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-11-15' = {
  parent: account
  name: guid(database.id, appPrincipalId, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: appPrincipalId
    scope: '${account.id}/dbs/${databaseName}'
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: account
  properties: {
    workspaceId: workspaceId
    logAnalyticsDestinationType: 'Dedicated'
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

@description('Resource ID of the account.')
output id string = account.id

@description('Account endpoint (COSMOS_ENDPOINT).')
output endpoint string = account.properties.documentEndpoint
