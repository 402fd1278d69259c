<?xml version="1.0" encoding="UTF-8"?>
<!-- 自然资源局 不动产登记系统: the "办结结果" XML export (GB18030, Beijing time without a zone)
     to canonical CaseResult bodies, one per <JL> record, inside hx:Records. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
                xmlns:hx="urn:huitong:envelope:1" xmlns:m="urn:huitong:case:1">
  <xsl:output method="xml" encoding="UTF-8"/>

  <xsl:template match="/">
    <hx:Records>
      <xsl:apply-templates select="BDCDJ_BJJG/JLS/JL"/>
    </hx:Records>
  </xsl:template>

  <xsl:template match="JL">
    <m:CaseResult>
      <m:CaseNumber><xsl:value-of select="normalize-space(YWH)"/></m:CaseNumber>
      <m:Result>
        <xsl:choose>
          <xsl:when test="JGDM = '1'">APPROVED</xsl:when>
          <xsl:when test="JGDM = '2'">REJECTED</xsl:when>
          <xsl:when test="JGDM = '3'">WITHDRAWN</xsl:when>
          <xsl:when test="JGDM = '4'">REFUSED</xsl:when>
          <!-- anything else stays as it is, and the XSD names it -->
          <xsl:otherwise><xsl:value-of select="JGDM"/></xsl:otherwise>
        </xsl:choose>
      </m:Result>
      <xsl:if test="normalize-space(SLSJ)">
        <m:AcceptedAt><xsl:call-template name="beijing-time"><xsl:with-param name="t" select="SLSJ"/></xsl:call-template></m:AcceptedAt>
      </xsl:if>
      <m:FinishedAt><xsl:call-template name="beijing-time"><xsl:with-param name="t" select="BJSJ"/></xsl:call-template></m:FinishedAt>
      <m:Handler><xsl:value-of select="normalize-space(BLR)"/></m:Handler>
      <xsl:if test="normalize-space(BJMS)"><m:Description><xsl:value-of select="normalize-space(BJMS)"/></m:Description></xsl:if>
      <xsl:if test="normalize-space(ZSBH)">
        <m:Certificate>
          <m:Name><xsl:value-of select="normalize-space(ZSMC)"/></m:Name>
          <m:Number><xsl:value-of select="normalize-space(ZSBH)"/></m:Number>
        </m:Certificate>
      </xsl:if>
      <xsl:if test="normalize-space(SF)"><m:Fee><xsl:value-of select="normalize-space(SF)"/></m:Fee></xsl:if>
    </m:CaseResult>
  </xsl:template>

  <!-- "2026-11-20 09:30:00" (Beijing time) to "2026-11-20T09:30:00+08:00" -->
  <xsl:template name="beijing-time">
    <xsl:param name="t"/>
    <xsl:variable name="s" select="normalize-space($t)"/>
    <xsl:value-of select="concat(substring-before($s, ' '), 'T', substring-after($s, ' '), '+08:00')"/>
  </xsl:template>
</xsl:stylesheet>
