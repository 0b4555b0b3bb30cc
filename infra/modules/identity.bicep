metadata description = 'The user-assigned managed identity the Function App runs as. User-assigned (not system-assigned) so that role assignments exist before the app first starts and survive re-creating the app.'

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource ID of the identity (for the Function App identity block and Key Vault reference resolution).')
output resourceId string = identity.id

@description('Client (application) ID: the app passes it as AZURE_CLIENT_ID / <connection>__clientId.')
output clientId string = identity.properties.clientId

@description('Object (principal) ID: the subject of every role assignment.')
output principalId string = identity.properties.principalId
