<?xml version="1.0" encoding="UTF-8"?>
<!-- Canonical CaseAccepted -> the DRC project system's ReceiveProjectCase request (urn:fgw:tzxm:1). -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:hx="urn:huitong:envelope:1" xmlns:c="urn:huitong:case:1"
                xmlns:t="urn:fgw:tzxm:1" exclude-result-prefixes="hx c">
  <xsl:output method="xml" encoding="UTF-8" indent="no"/>
  <xsl:template match="/hx:Envelope">
    <xsl:variable name="case" select="hx:Body/c:CaseAccepted"/>
    <t:ReceiveProjectCase>
      <t:projectCode><xsl:value-of select="$case/c:ProjectCode"/></t:projectCode>
      <t:caseNumber><xsl:value-of select="$case/c:CaseNumber"/></t:caseNumber>
      <t:itemName><xsl:value-of select="$case/c:ServiceItem/c:Name"/></t:itemName>
      <t:applicantName><xsl:value-of select="$case/c:Applicant/c:Name"/></t:applicantName>
      <t:acceptedAt><xsl:value-of select="$case/c:AcceptedAt"/></t:acceptedAt>
      <t:messageId><xsl:value-of select="hx:Header/hx:MessageId"/></t:messageId>
    </t:ReceiveProjectCase>
  </xsl:template>
</xsl:stylesheet>
