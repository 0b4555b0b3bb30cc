metadata description = 'Standard availability test probing the app\'s anonymous liveness route, so Application Insights Availability shows whether the control plane answers at all.'

@description('Name of the web test.')
param name string

@description('Azure region (the Application Insights component\'s).')
param location string

@description('Tags applied to the test (the hidden-link tag to the component is added).')
param tags object

@description('Resource ID of the Application Insights component the results go to.')
param appInsightsId string

@description('URL probed with GET; must answer 200 without credentials (functions/health.py).')
param url string

@description('Seconds between probes from each location.')
@allowed([
  300
  600
  900
])
param frequencySeconds int = 300

@description('Probe locations (Application Insights availability location ids; at least five are recommended to tell an outage from a network blip).')
param locationIds array = [
  'us-va-ash-azr'
  'us-ca-sjc-azr'
  'emea-nl-ams-azr'
  'emea-gb-db3-azr'
  'apac-sg-sin-azr'
]

resource test 'Microsoft.Insights/webtests@2022-06-15' = {
  name: name
  location: location
  // The portal lists a web test under the component it is linked to through this tag.
  tags: union(tags, { 'hidden-link:${appInsightsId}': 'Resource' })
  kind: 'standard'
  properties: {
    SyntheticMonitorId: name
    Name: name
    Description: 'GET /api/health answers 200'
    Kind: 'standard'
    Enabled: true
    Frequency: frequencySeconds
    Timeout: 30
    RetryEnabled: true
    Locations: [for id in locationIds: { Id: id }]
    Request: {
      RequestUrl: url
      HttpVerb: 'GET'
      ParseDependentRequests: false
      FollowRedirects: false
    }
    ValidationRules: {
      ExpectedHttpStatusCode: 200
      SSLCheck: true
      SSLCertRemainingLifetimeCheck: 7
    }
  }
}

@description('Resource ID of the availability test.')
output id string = test.id
