metadata description = 'A StorageV2 account reachable only with Entra ID (no shared key, no anonymous blob access, TLS 1.2), with blob and container soft delete and private containers.'

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the account.')
param tags object

@description('Redundancy of the account.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_ZRS'

@description('Private blob containers to create.')
param containerNames array

@description('Days a deleted blob (or overwritten page, via snapshots) can be restored.')
@minValue(1)
@maxValue(365)
param blobSoftDeleteDays int = 7

@description('Days a deleted container can be restored.')
@minValue(1)
@maxValue(365)
param containerSoftDeleteDays int = 7

@description('Lifecycle backstop: delete blobs under these container-name prefixes this many days after their last modification (0 disables the rule). The app disposes of applied data itself; this only catches what it missed.')
@minValue(0)
param expireBlobsAfterDays int = 0

@description('Container-name prefixes the lifecycle rule applies to (ignored when expireBlobsAfterDays is 0).')
param expireBlobsPrefixes array = []

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // checkov:skip=CKV_AZURE_206: redundancy is a per-account parameter: host (task hub) and cache (uploads the appliance re-sends) hold re-creatable data and use ZRS; the replica account takes replicaStorageSku, which allows Standard_GRS/Standard_GZRS.
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Identity only: every client (the app, Event Grid dead-lettering, appliances via user-delegation SAS)
    // authenticates with Entra ID, so account keys and account SAS are switched off.
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35 below: public endpoint, identity-only access.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration has no fixed outbound IPs and on-premises appliances upload over the internet; access is identity-only (shared key off). Private endpoints + VNet integration are the documented hardening path (docs/infra.md).
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      // Double encryption at rest; cannot be changed after creation, so decided here.
      requireInfrastructureEncryption: true
      keySource: 'Microsoft.Storage'
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: blobSoftDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: containerSoftDeleteDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (expireBlobsAfterDays > 0) {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-unclaimed-uploads'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: expireBlobsPrefixes
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: expireBlobsAfterDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

@description('Resource ID of the account.')
output id string = account.id

@description('Name of the account.')
output name string = account.name

@description('Blob endpoint, e.g. https://<name>.blob.core.windows.net/ (what *_STORAGE_ACCOUNT_URL settings take).')
output blobEndpoint string = account.properties.primaryEndpoints.blob
