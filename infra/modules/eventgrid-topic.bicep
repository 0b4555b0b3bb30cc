metadata description = 'Event Grid custom topic the appliances publish to: Entra-only publishing (no access keys or SAS), TLS 1.2, system identity for identity-based dead-lettering.'

@description('Topic name.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the topic.')
param tags object

@description('Schema appliances publish in; the subscription delivers in the same schema.')
@allowed([
  'EventGridSchema'
  'CloudEventSchemaV1_0'
])
param inputSchema string

@description('Log Analytics workspace receiving publish and delivery failure logs.')
param workspaceId string

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  identity: {
    // Used only to write dead-lettered events to blob storage that has shared-key access disabled.
    type: 'SystemAssigned'
  }
  properties: {
    // checkov:skip=CKV_AZURE_193: appliances publish from on-premises networks over the internet; publishing requires an Entra token with EventGrid Data Sender (disableLocalAuth), so the public endpoint accepts no anonymous or key-based traffic.
    inputSchema: inputSchema
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: topic
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'allLogs'
        enabled: true
      }
    ]
  }
}

@description('Resource ID of the topic.')
output id string = topic.id

@description('Name of the topic.')
output name string = topic.name

@description('Publish endpoint, e.g. https://<topic>.<region>-1.eventgrid.azure.net/api/events (EVENTGRID_TOPIC_ENDPOINT).')
output endpoint string = topic.properties.endpoint

@description('Principal ID of the topic\'s system identity (granted write on the dead-letter container).')
output principalId string = topic.identity.principalId
