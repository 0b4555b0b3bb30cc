metadata description = 'Key Vault in RBAC mode with purge protection, holding the appliance credential pepper.'

@description('Key Vault name (3-24 letters, digits, hyphens; globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the vault.')
param tags object

@description('Name of the secret holding the appliance credential pepper.')
param pepperSecretName string

@description('Initial pepper value. Empty: the secret is not written by this deployment (it already exists, or is set out of band with az keyvault secret set). Never commit a value.')
@secure()
param pepperValue string

@description('Days a deleted vault or secret stays recoverable.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

@description('Log Analytics workspace receiving the vault\'s audit logs.')
param workspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    // checkov:skip=CKV_AZURE_109: App Service Key Vault references are not a trusted-service bypass, so a Deny firewall would break APPLIANCE_CREDENTIAL_PEPPER resolution for a Flex app without VNet integration. Access is RBAC-only; private endpoint + VNet integration is the hardening path.
    // checkov:skip=CKV_AZURE_189: same reason as CKV_AZURE_109.
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    // Purge protection cannot be turned off again: a deleted pepper stays recoverable for the retention
    // period, so a mistaken delete never invalidates every appliance credential for good.
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource pepper 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(pepperValue)) {
  parent: vault
  name: pepperSecretName
  properties: {
    // checkov:skip=CKV_AZURE_114: false positive: contentType is set below, but checkov's Bicep graph nests a conditional resource's body one level deeper and does not find it.
    // checkov:skip=CKV_AZURE_41: an expiring pepper would lock out every appliance at once; rotation is a deliberate procedure (docs/deploy.md) because it forces appliance re-registration.
    value: pepperValue
    contentType: 'text/plain; purpose=appliance-credential-pepper'
    attributes: {
      enabled: true
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

@description('Resource ID of the vault.')
output id string = vault.id

@description('Name of the vault.')
output name string = vault.name

@description('Versionless URI of the pepper secret: the Key Vault reference follows the latest version after rotation.')
output pepperSecretUri string = '${vault.properties.vaultUri}secrets/${pepperSecretName}'
