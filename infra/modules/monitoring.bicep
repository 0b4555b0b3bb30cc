metadata description = 'Log Analytics workspace, workspace-based Application Insights (Entra-only ingestion) and the operations workbook.'

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param appInsightsName string

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Days the workspace keeps data (30 is the no-extra-cost minimum for PerGB2018).')
@minValue(30)
@maxValue(730)
param retentionInDays int

@description('Display name of the operations workbook.')
param workbookDisplayName string

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      // Access follows the resource's RBAC, so an operator with rights on the app sees only its logs.
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    // Entra-authenticated ingestion only: the instrumentation key in the connection string is then not
    // enough to write telemetry, so the connection string is not a secret (the app authenticates with
    // its identity, which holds Monitoring Metrics Publisher on this component).
    DisableLocalAuth: true
  }
}

// Workbook resource names must be GUIDs; derived from the component so redeployments update in place.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(appInsights.id, 'migration-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: workbookDisplayName
    category: 'workbook'
    sourceId: appInsights.id
    version: 'Notebook/1.0'
    serializedData: string(union(loadJsonContent('../workbook.json'), {
      fallbackResourceIds: [
        appInsights.id
      ]
    }))
  }
}

@description('Resource ID of the Log Analytics workspace (diagnostic settings target).')
output workspaceId string = workspace.id

@description('Resource ID of the Application Insights component.')
output appInsightsId string = appInsights.id

@description('Name of the Application Insights component.')
output appInsightsName string = appInsights.name

@description('Application Insights connection string (not a secret while local auth is disabled).')
output connectionString string = appInsights.properties.ConnectionString

@description('Resource ID of the operations workbook.')
output workbookId string = workbook.id
