metadata description = 'Operator alerts: an action group (email and webhook receivers) and scheduled query rules over the telemetry the app sends to Application Insights (RPO over the threshold, health Critical, a failed job, an appliance silent, a Mobility agent silent).'

@description('Name of the action group.')
param actionGroupName string

@description('Short name of the action group, shown in SMS and email (at most 12 characters).')
@maxLength(12)
param actionGroupShortName string

@description('Name prefix of the alert rules.')
param namePrefix string

@description('Azure region of the alert rules (scheduled query rules are regional; the action group is global).')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Resource ID of the Application Insights component the rules query.')
param appInsightsId string

@description('Email addresses that receive the alerts. Empty: no email receiver.')
param alertEmails array = []

@description('Webhook URLs (HTTPS) that receive the alerts with the common alert schema. Empty: no webhook receiver. A URL that carries a token is a secret: pass it on the command line, not in a parameters file.')
param alertWebhookUrls array = []

@description('RPO in seconds above which a machine alerts; keep it equal to the app setting HEALTH_RPO_WARNING_SECONDS (the health rules default to 2 hours).')
@minValue(60)
param rpoThresholdSeconds int = 7200

@description('Seconds without a heartbeat after which an appliance with replicating machines alerts; keep it equal to HEALTH_HEARTBEAT_TIMEOUT_SECONDS (15 minutes by default).')
@minValue(60)
param applianceSilentSeconds int = 900

@description('Seconds without a heartbeat after which a replicating machine\'s Mobility agent alerts (catalog MCP-5101 MobilityAgentNotResponding); keep it equal to HEALTH_AGENT_HEARTBEAT_TIMEOUT_SECONDS (15 minutes by default).')
@minValue(60)
param mobilityAgentSilentSeconds int = 900

@description('Whether the rules evaluate (false: deployed but disabled, e.g. while a migration wave is planned).')
param enabled bool = true

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: actionGroupShortName
    enabled: true
    emailReceivers: [
      for (address, i) in alertEmails: {
        name: 'email-${i}'
        emailAddress: address
        useCommonAlertSchema: true
      }
    ]
    webhookReceivers: [
      for (url, i) in alertWebhookUrls: {
        name: 'webhook-${i}'
        serviceUri: url
        useCommonAlertSchema: true
      }
    ]
  }
}

// Each rule reads what the app emits (shared/platform/telemetry.py); tests/infra/test_alerts.py holds every
// metric name and dimension here to the emitters. The health monitor timer records health, RPO and the
// appliances' and Mobility agents' heartbeat age at each check, and every job's end is counted once.
var rules = [
  {
    name: 'rpo-over-threshold'
    description: 'A replicating machine\'s RPO is above ${rpoThresholdSeconds} seconds: its newest recovery point is too old. See the machine\'s events (migrate machines events <id>).'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'customMetrics\n| where name == "migrate.replication.rpo"\n| extend machine = tostring(customDimensions["migrate.machine_id"])\n| summarize rpoSeconds = max(valueMax) by machine\n| where rpoSeconds > ${rpoThresholdSeconds}'
    dimension: 'machine'
  }
  {
    name: 'health-critical'
    description: 'A replicating machine\'s health is Critical at the latest health check. Its current errors say what to do (migrate machines show <id>).'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'customMetrics\n| where name == "migrate.replication.health"\n| extend machine = tostring(customDimensions["migrate.machine_id"])\n| summarize arg_max(timestamp, valueMax) by machine\n| where valueMax >= 2'
    dimension: 'machine'
  }
  {
    name: 'job-failed'
    description: 'A long operation (test migration, migration, failover, planned failover, reprotect, Mobility installation, ...) ended Failed. Its steps say which failed and why (migrate jobs show <jobId>).'
    severity: 2
    frequency: 'PT5M'
    window: 'PT5M'
    query: 'customMetrics\n| where name == "migrate.jobs.finished"\n| where tostring(customDimensions["migrate.job.status"]) == "Failed"\n| extend machine = tostring(customDimensions["migrate.machine_id"]), job = tostring(customDimensions["migrate.job_id"]), kind = tostring(customDimensions["migrate.job.kind"]), errorCode = tostring(customDimensions["migrate.error_code"])\n| summarize failed = sum(value) by machine, job, kind, errorCode'
    dimension: 'job'
  }
  {
    name: 'appliance-silent'
    description: 'An appliance with replicating machines sent no heartbeat for more than ${applianceSilentSeconds} seconds: its machines stop replicating (migrate appliances show <id>).'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'customMetrics\n| where name == "migrate.appliance.heartbeat_age"\n| extend appliance = tostring(customDimensions["migrate.appliance_id"])\n| summarize arg_max(timestamp, valueMax) by appliance\n| where valueMax > ${applianceSilentSeconds}'
    dimension: 'appliance'
  }
  {
    name: 'mobility-agent-silent'
    description: 'The Mobility agent of a replicating machine sent no heartbeat for more than ${mobilityAgentSilentSeconds} seconds (MCP-5101 MobilityAgentNotResponding): the machine\'s cycles stop. See the agent (migrate mobility show <id>) and the machine\'s current errors (migrate machines show <id>).'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: 'customMetrics\n| where name == "migrate.mobility.agent_heartbeat_age"\n| extend machine = tostring(customDimensions["migrate.machine_id"])\n| summarize arg_max(timestamp, valueMax) by machine\n| where valueMax > ${mobilityAgentSilentSeconds}'
    dimension: 'machine'
  }
]

resource alertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: '${namePrefix}-${rule.name}'
    location: location
    tags: tags
    properties: {
      displayName: '${namePrefix}: ${rule.name}'
      description: rule.description
      severity: rule.severity
      enabled: enabled
      scopes: [
        appInsightsId
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Count'
            dimensions: [
              {
                name: rule.dimension
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      autoMitigate: true
      actions: {
        actionGroups: [
          actionGroup.id
        ]
      }
    }
  }
]

@description('Resource ID of the action group (add receivers to it, or use it from other rules).')
output actionGroupId string = actionGroup.id

@description('Names of the alert rules.')
output alertRuleNames array = [for (rule, i) in rules: alertRules[i].name]
