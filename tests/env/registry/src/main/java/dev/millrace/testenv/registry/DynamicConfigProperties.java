package dev.millrace.testenv.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.inject.Produces;
import javax.inject.Singleton;

/**
 * Stands in for Apicurio's "Config Index" Quarkus extension, whose build step
 * (apicurio-common-app-components-config-index-deployment) is not on Maven
 * Central. That step lists the settings an admin may change at run time
 * through the registry's admin API; with this empty list there are none,
 * which the test world never needs. Everything else is Apicurio's own code.
 */
@Singleton
public class DynamicConfigProperties {
    @Produces
    @Singleton
    DynamicConfigPropertyList dynamicConfigProperties() {
        return new DynamicConfigPropertyList(List.of());
    }
}
